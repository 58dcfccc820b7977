-- Scratch databases: one per configuration, created and dropped by each run.

-- name: create_database
CREATE DATABASE {db}

-- name: mark_database
COMMENT ON DATABASE {db} IS 'simtrail bench scratch database; safe to drop'

-- name: drop_database
DROP DATABASE IF EXISTS {db} WITH (FORCE)

-- name: checkpoint
CHECKPOINT

-- name: server_facts
SELECT pg_catalog.version() AS version,
       pg_catalog.current_setting('server_version') AS server_version,
       pg_catalog.current_setting('shared_buffers') AS shared_buffers,
       pg_catalog.current_setting('work_mem') AS work_mem,
       pg_catalog.current_setting('fsync') AS fsync,
       pg_catalog.current_setting('synchronous_commit') AS synchronous_commit,
       pg_catalog.current_setting('full_page_writes') AS full_page_writes,
       pg_catalog.current_setting('wal_level') AS wal_level,
       pg_catalog.current_setting('max_wal_size') AS max_wal_size,
       pg_catalog.current_setting('autovacuum') AS autovacuum,
       pg_catalog.current_setting('jit') AS jit,
       (SELECT d.datcollate FROM pg_catalog.pg_database AS d
        WHERE d.datname = pg_catalog.current_database()) AS lc_collate,
       pg_catalog.inet_server_addr() IS NULL AS unix_socket
