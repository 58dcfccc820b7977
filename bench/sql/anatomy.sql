-- Where simtrail's per-statement time goes: the generated capture of
-- public.patient_vitals, read back so that variants of it can be measured.

-- name: async_commit
-- The anatomy measures work, not the disk's flush latency.
SET synchronous_commit = off

-- name: capture_function
SELECT ('simtrail.' || pg_catalog.quote_ident(t.function_name) || '()')::regprocedure::oid AS oid,
       t.function_name AS name
FROM simtrail.captured_tables AS t
WHERE t.relid = 'public.patient_vitals'::regclass

-- name: function_definition
SELECT pg_catalog.pg_get_functiondef(%(oid)s) AS definition

-- name: log_indexes
-- The secondary indexes of the log (everything but its primary key).
SELECT c.relname AS name, pg_catalog.pg_get_indexdef(i.indexrelid) AS definition
FROM pg_catalog.pg_index AS i
JOIN pg_catalog.pg_class AS c ON c.oid = i.indexrelid
WHERE i.indrelid = 'simtrail.changes'::regclass AND NOT i.indisprimary
ORDER BY 1

-- name: drop_index
DROP INDEX {index}

-- name: invoker
-- Run the function as its caller, with no search_path of its own.
ALTER FUNCTION {function}() SECURITY INVOKER RESET search_path

-- name: no_jit
-- Big transition tables make the planner's row estimates large enough to
-- switch JIT compilation on inside the capture function.
ALTER FUNCTION {function}() SET jit = off

-- name: empty_body
-- The floor of a statement-level trigger with transition tables: PostgreSQL
-- still collects the rows and calls the function; the function does nothing.
CREATE OR REPLACE FUNCTION {function}() RETURNS trigger
LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$

-- name: truncate
-- Each variant starts from an empty log, so none inherits a bigger one.
TRUNCATE {table}
