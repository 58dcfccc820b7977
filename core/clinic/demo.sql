-- Queries of `simtrail demo`, by name.

-- name: database_note
SELECT shobj_description(oid, 'pg_database') AS note FROM pg_database WHERE datname = %(name)s

-- name: set_claims
SELECT set_config('request.jwt.claims', %(claims)s, false)

-- name: set_actor
SELECT set_config('simtrail.actor', %(actor)s, false)

-- name: public_tables
SELECT count(*) AS n FROM pg_catalog.pg_tables WHERE schemaname = 'public'

-- name: tenant_names
SELECT id, name FROM public.tenants

-- name: last_change
SELECT coalesce(max(id), 0) AS id FROM simtrail.changes

-- name: session_summary
SELECT c.table_name, c.operation,
       count(*) AS changes,
       count(*) FILTER (WHERE c.tenant_id IS NULL) AS without_tenant,
       min(c.actor ->> 'email') AS who
FROM simtrail.simulation_tenant_changes AS c
WHERE c.id > %(since)s AND c.rewind_id IS NULL
  AND c.tenant_id = %(tenant)s
GROUP BY 1, 2
ORDER BY 1, 2

-- name: cascade_example
SELECT c.table_name, c.tenant_id, c.row_pk
FROM simtrail.simulation_tenant_changes AS c
WHERE c.id > %(since)s AND c.operation = 'DELETE'
  AND c.table_name IN ('public.handover_notes', 'public.wound_assessments', 'public.lab_results')
ORDER BY c.id
LIMIT 3

-- name: log_rows
SELECT (SELECT count(*) FROM simtrail.changes) AS log,
       (SELECT count(*) FROM simtrail.archive) AS archive
