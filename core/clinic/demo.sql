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

-- name: new_tenant
INSERT INTO public.tenants (id, name) VALUES (%(id)s, %(name)s)

-- name: launch_counts
-- Per captured table: rows of the template and of the class launched from
-- it, and how many primary keys the two share (a copy must share none).
SELECT t.table_name, a.row_count AS template_rows, b.row_count AS launched_rows,
       (SELECT count(*) FROM simtrail.copy_keys AS k
        WHERE k.table_name = t.table_name AND k.old_key = k.new_key) AS ids_shared
FROM simtrail.captured_tables AS t
JOIN simtrail.tenant_state(%(a)s) AS a ON a.table_name = t.table_name
JOIN simtrail.tenant_state(%(b)s) AS b ON b.table_name = t.table_name
ORDER BY t.table_name

-- name: diff_against
SELECT simtrail.diff_against(%(clone)s, %(template)s) AS report

-- name: wristbands_shared
SELECT count(*) FILTER (WHERE b.wristband IS NOT NULL) AS renewed,
       count(*) FILTER (WHERE b.wristband IN (SELECT a.wristband FROM public.patients AS a
                                              WHERE a.tenant_id = %(a)s::uuid)) AS shared
FROM public.patients AS b WHERE b.tenant_id = %(b)s::uuid

-- name: first_patient
SELECT p.id, p.patient_id FROM public.patients AS p
WHERE p.tenant_id = %(tenant)s::uuid ORDER BY p.patient_id LIMIT 1
