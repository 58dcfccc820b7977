-- The rewind benchmark's SQL. {names} are filled with psycopg.sql.Identifier.

-- name: bulk_history
-- A class's charting before launch: many vitals per patient.
INSERT INTO public.patient_vitals (tenant_id, patient_id, heart_rate, temperature, recorded_at)
SELECT p.tenant_id, p.id, 60 + g %% 40, 36.5 + (g %% 20) / 10.0,
       timestamptz '2025-11-03 07:00+00' + g * interval '1 minute'
FROM public.patients AS p, generate_series(1, %(per_patient)s) AS g
WHERE p.tenant_id = %(tenant)s

-- name: session_updates
-- One round of charting corrections on a twentieth of the class's vitals.
UPDATE public.patient_vitals SET heart_rate = heart_rate + 1, pain_score = %(round)s %% 10
WHERE tenant_id = %(tenant)s AND abs(hashtext(id::text)) %% 20 = 0

-- name: session_inserts
INSERT INTO public.patient_vitals (tenant_id, patient_id, heart_rate)
SELECT p.tenant_id, p.id, 70 FROM public.patients AS p, generate_series(1, %(per_patient)s)
WHERE p.tenant_id = %(tenant)s

-- name: session_discharge
-- One patient discharged: the cascade reaches every child table.
DELETE FROM public.patients WHERE id = (
    SELECT id FROM public.patients WHERE tenant_id = %(tenant)s ORDER BY id LIMIT 1)

-- name: class_changes
SELECT count(*) AS n FROM simtrail.changes WHERE tenant_id = %(tenant)s

-- name: tables
SELECT t.table_name, t.relid::regclass::text AS rel, t.pk_columns,
       simtrail.render_tenant_lookup(t.tenant_path, 'r') AS lookup,
       coalesce(d.depth, 0) AS depth
FROM simtrail.captured_tables AS t
LEFT JOIN simtrail.fk_depths() AS d USING (table_name)
ORDER BY coalesce(d.depth, 0), t.table_name

-- name: rewind
SELECT simtrail.rewind(%(tenant)s, 'mark:launch', false) AS report

-- name: stage
-- The rewind's first step alone: the net change of every row from the log,
-- and the live rows those name, locked as the rewind locks them.
SELECT simtrail.rewind_stage(%(tenant)s, 'mark:launch', false, false, true) AS report

-- name: plan
-- The first step and the checks before any write.
SELECT simtrail.rewind_plan(%(tenant)s, 'mark:launch', false) AS report

-- name: replica
SET LOCAL session_replication_role = replica

-- name: other_log
-- Another tenant's history, written straight into the log: a rewind of this
-- class must not read it.
INSERT INTO simtrail.changes (tenant_id, table_name, operation, row_pk, new_data)
SELECT 'another-class', 'public.patient_vitals', 'INSERT',
       jsonb_build_object('id', g), jsonb_build_object('id', g, 'heart_rate', 70)
FROM generate_series(1, %(rows)s) AS g

-- name: analyze_log
ANALYZE simtrail.changes

-- name: single_write
INSERT INTO public.patient_vitals (tenant_id, patient_id, heart_rate) VALUES (%s, %s, 72)

-- name: a_patient
SELECT id FROM public.patients WHERE tenant_id = %(tenant)s LIMIT 1

-- name: read_profile_on
-- The plan of the rewind's log read, with buffer counts, sent back as a
-- NOTICE (superuser settings; no profile when refused).
LOAD 'auto_explain';
SET LOCAL auto_explain.log_min_duration = 0;
SET LOCAL auto_explain.log_analyze = on;
SET LOCAL auto_explain.log_buffers = on;
SET LOCAL auto_explain.log_nested_statements = on;
SET LOCAL auto_explain.log_format = json;
SET LOCAL auto_explain.log_level = notice

-- name: checkpoint
-- Writes out what the bulk insert left dirty, so the rewinds timed after it
-- do not pay for flushing another class's pages.
CHECKPOINT
