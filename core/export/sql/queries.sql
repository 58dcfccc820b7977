-- The export's queries, by name. The export runs as the role that owns
-- schema simtrail (it reads the seal secret to hand out column salts), in
-- one REPEATABLE READ, READ ONLY transaction; the export record is written
-- after it, in a short transaction of its own.

-- name: secret
SELECT s.secret FROM simtrail.seal_secret AS s

-- name: system_identifier
-- NULL where the role may not read pg_control_system().
SELECT CASE WHEN pg_catalog.has_function_privilege('pg_catalog.pg_control_system()', 'EXECUTE')
            THEN (SELECT c.system_identifier FROM pg_catalog.pg_control_system() AS c) END
       AS system_identifier,
       pg_catalog.current_database()::text AS database

-- name: heads
SELECT h.tenant_id, h.seq, h.hash
FROM simtrail.chain_heads AS h
WHERE %(tenants)s::text[] IS NULL OR h.tenant_id = ANY (%(tenants)s::text[])
ORDER BY h.tenant_id COLLATE "C" NULLS FIRST

-- name: bounds
-- The chain's first surviving seal, and the seqs a time filter starts and
-- ends at (NULL: none in range).
SELECT pg_catalog.min(s.seq) AS first_seq,
       pg_catalog.min(s.seq) FILTER (WHERE %(since)s::timestamptz IS NULL
                                        OR s.changed_at >= %(since)s) AS since_seq,
       pg_catalog.max(s.seq) FILTER (WHERE %(until)s::timestamptz IS NULL
                                        OR s.changed_at < %(until)s) AS until_seq
FROM simtrail.seals AS s
WHERE s.tenant_id = %(tenant)s OR (%(tenant)s::text IS NULL AND s.tenant_id IS NULL)

-- name: seal_at
SELECT s.hash FROM simtrail.seals AS s
WHERE (s.tenant_id = %(tenant)s OR (%(tenant)s::text IS NULL AND s.tenant_id IS NULL))
  AND s.seq = %(seq)s

-- name: prune_anchor
-- Retention's record of what it dropped: the hash of the last seq it dropped.
SELECT r.value ->> 'last_hash' AS hash
FROM simtrail.chain_records AS c
CROSS JOIN LATERAL pg_catalog.jsonb_array_elements(c.body -> 'ranges') AS r
WHERE c.kind = 'prune'
  AND r.value -> 'tenant_id' = coalesce(pg_catalog.to_jsonb(%(tenant)s::text), 'null'::jsonb)
  AND (r.value ->> 'last_seq')::bigint = %(seq)s
ORDER BY c.id DESC
LIMIT 1

-- name: changes
-- One tenant's sealed originals from lo to hi, each with its data: from the
-- archive when compaction moved it there, else from the log.
SELECT s.seq, s.hash, s.change_id,
       coalesce(a.table_name, c.table_name) AS table_name,
       coalesce(a.operation, c.operation) AS operation,
       CASE WHEN a.id IS NULL THEN c.row_pk ELSE a.row_pk END AS row_pk,
       CASE WHEN a.id IS NULL THEN c.old_pk ELSE a.old_pk END AS old_pk,
       CASE WHEN a.id IS NULL THEN c.old_data ELSE a.old_data END AS old_data,
       CASE WHEN a.id IS NULL THEN c.new_data ELSE a.new_data END AS new_data,
       coalesce(a.changed_at, c.changed_at) AS changed_at,
       CASE WHEN a.id IS NULL THEN c.actor ELSE a.actor END AS actor,
       CASE WHEN a.id IS NULL THEN c.moved ELSE a.moved END AS moved,
       a.id IS NOT NULL OR c.id IS NOT NULL AS found
FROM simtrail.seals AS s
LEFT JOIN simtrail.archive AS a ON a.id = s.change_id
LEFT JOIN simtrail.simulation_tenant_changes AS c
       ON c.id = s.change_id AND c.net_count IS NULL
WHERE (s.tenant_id = %(tenant)s OR (%(tenant)s::text IS NULL AND s.tenant_id IS NULL))
  AND s.seq BETWEEN %(lo)s AND %(hi)s
ORDER BY s.seq

-- name: append_export_record
-- seal's append_record serialises every writer of the record chain.
SELECT (simtrail.append_record('export', %(body)s::jsonb) ->> 'id')::bigint AS id

-- name: record
SELECT r.id, r.prev_hash, r.hash, r.body::text AS body
FROM simtrail.chain_records AS r WHERE r.id = %(id)s

-- name: sign_record
SELECT simtrail.sign_record(%(id)s, %(signature)s, %(key_id)s) AS signed

-- name: known_tables
-- Tables whose history the export may hold: captured now, or retired with
-- their history kept; with each one's primary-key columns where known.
SELECT t.table_name, t.pk_columns FROM simtrail.captured_tables AS t
UNION ALL
SELECT r.table_name, NULL::text[] FROM simtrail.retired_tables AS r
WHERE NOT EXISTS (SELECT 1 FROM simtrail.captured_tables AS t WHERE t.table_name = r.table_name)

-- name: records_between
-- The record chain from the previous export's record (exclusive) up to this
-- export's (exclusive): checkpoints and prunes an auditor checks offline.
SELECT r.id, r.kind, pg_catalog.encode(r.prev_hash, 'hex') AS prev_hash,
       pg_catalog.encode(r.hash, 'hex') AS hash, r.body::text AS body,
       pg_catalog.encode(r.signature, 'hex') AS signature, r.key_id
FROM simtrail.chain_records AS r
WHERE r.id > %(after)s AND r.id < %(id)s
ORDER BY r.id

-- name: held
-- Seals retention kept while dropping their changes (above a seq it kept).
SELECT DISTINCT (h.value ->> 'seq')::bigint AS seq, (h.value ->> 'change_id')::bigint AS change_id
FROM simtrail.chain_records AS c
CROSS JOIN LATERAL pg_catalog.jsonb_array_elements(coalesce(c.body -> 'held', '[]')) AS h
WHERE c.kind = 'prune'
  AND h.value -> 'tenant_id' = coalesce(pg_catalog.to_jsonb(%(tenant)s::text), 'null'::jsonb)
