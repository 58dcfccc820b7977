-- The clone benchmark's SQL. The baselines' functions live in
-- clone_baselines.sql. {names} are filled with psycopg.sql.Identifier.

-- name: tables
-- Each configured table and the relation holding a tenant's rows of it.
SELECT c.table_name, simtrail.tenant_rows_sql(c.table_name, %(tenant)s, false) AS rows
FROM simtrail.captured_tables AS c
ORDER BY c.table_name

-- name: new_tenant
-- The app's own row for the class a repeat clones into.
INSERT INTO public.tenants (id, name) VALUES (gen_random_uuid(), %(name)s)
RETURNING id::text AS id

-- name: capture_off
ALTER TABLE {table} DISABLE TRIGGER simtrail_capture_insert

-- name: replica
SET LOCAL session_replication_role = replica

-- name: no_timeout
SET statement_timeout = 0

-- name: save_snapshot
INSERT INTO bench_clone.snapshot (doc) SELECT bench_clone.save_snapshot(%(tenant)s)

-- name: snapshot_size
SELECT pg_column_size(doc) AS bytes FROM bench_clone.snapshot

-- name: restore
SELECT bench_clone.restore_snapshot(%(target)s::uuid, s.doc, %(as_written)s) AS report
FROM bench_clone.snapshot AS s

-- name: floor_keys
SELECT k.n, k.table_name, k.generated FROM bench_clone.floor_keys(%(tenant)s) AS k ORDER BY k.n

-- name: floor_statement
SELECT bench_clone.floor_statement(%(n)s, %(table)s, %(target)s, %(keys)s) AS statement

-- name: clone
SELECT simtrail.clone_tenant(%(source)s, %(target)s) AS report

-- name: has_clone
SELECT to_regprocedure('simtrail.clone_tenant(text,text,text,boolean)') IS NOT NULL AS ok

-- name: vacuum
VACUUM ANALYZE

-- name: written_tables
-- What a clone writes to: the configured tables and simtrail's own.
SELECT c.table_name AS name FROM simtrail.captured_tables AS c
UNION ALL
SELECT k.oid::regclass::text FROM pg_class AS k
WHERE k.relnamespace = 'simtrail'::regnamespace AND k.relkind IN ('r', 'p')

-- name: vacuum_tables
VACUUM {tables}

-- name: profile_on
-- Every statement a run executes that takes 1 ms or more, nested ones
-- included, with its plan and the time spent in each trigger (a statement's
-- per-row foreign-key checks add up there), sent back as NOTICEs; and the
-- time per function. Superuser settings: no profile when they are refused.
LOAD 'auto_explain';
SET LOCAL auto_explain.log_min_duration = 1;
SET LOCAL auto_explain.log_analyze = on;
SET LOCAL auto_explain.log_timing = on;
SET LOCAL auto_explain.log_triggers = on;
SET LOCAL auto_explain.log_nested_statements = on;
SET LOCAL auto_explain.log_format = json;
SET LOCAL auto_explain.log_level = notice;
SET LOCAL track_functions = 'all'

-- name: function_times
SELECT f.schemaname || '.' || f.funcname AS name, f.calls,
       f.total_time AS total_ms, f.self_time AS self_ms
FROM pg_stat_xact_user_functions AS f
ORDER BY f.self_time DESC

-- name: timeout
SELECT set_config('statement_timeout', %(ms)s, true)

