-- The capture workloads, run identically against every configuration.
-- Table names come in as {table} placeholders, filled with sql.Identifier.

-- name: add_nurse
-- A user benchmark rows are charted by; bulk statements find their rows by theirs.
INSERT INTO public.user_profiles (id, full_name, role)
VALUES (%(nurse)s, 'Bench Nurse, RN', 'student')

-- name: patients
SELECT p.id, p.tenant_id FROM public.patients AS p ORDER BY p.id

-- name: no_autovacuum
-- Vacuum runs explicitly between phases instead, so it never lands inside a
-- measurement of one configuration only.
ALTER TABLE {table} SET (autovacuum_enabled = false)

-- name: vacuum
VACUUM (ANALYZE) {table}

-- name: table_size
SELECT pg_catalog.pg_total_relation_size(%(table)s::regclass) AS bytes,
       (SELECT pg_catalog.count(*) FROM pg_catalog.pg_index AS i
        WHERE i.indrelid = %(table)s::regclass) AS indexes

-- name: relation_parts
-- Where a log table's bytes are: its heap (with TOAST), then each index.
SELECT %(table)s::text AS part, pg_catalog.pg_table_size(%(table)s::text::regclass) AS bytes
UNION ALL
SELECT i.indexrelid::regclass::text, pg_catalog.pg_relation_size(i.indexrelid)
FROM pg_catalog.pg_index AS i WHERE i.indrelid = %(table)s::text::regclass

-- name: count_rows
SELECT pg_catalog.count(*) AS n FROM {table}

-- name: insert_one
INSERT INTO public.patient_vitals
    (id, tenant_id, patient_id, temperature, blood_pressure, heart_rate,
     respiratory_rate, oxygen_saturation, pain_score, recorded_by)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)

-- name: update_one
-- A charting correction: two numeric fields of one reading.
UPDATE public.patient_vitals
   SET heart_rate = %s, pain_score = %s
 WHERE id = %s

-- name: delete_one
DELETE FROM public.patient_vitals WHERE id = %s

-- name: bulk_insert
-- One statement charting many readings, spread over every seeded patient.
INSERT INTO public.patient_vitals
    (tenant_id, patient_id, temperature, blood_pressure, heart_rate,
     respiratory_rate, oxygen_saturation, pain_score, recorded_at, recorded_by)
SELECT p.tenants[1 + mod(g, p.n)], p.ids[1 + mod(g, p.n)],
       36.0 + mod(g, 25) / 10.0,
       (100 + mod(g, 60))::text || '/' || (60 + mod(g, 30))::text,
       55 + mod(g, 60), 12 + mod(g, 12), 90.0 + mod(g, 100) / 10.0, mod(g, 11),
       TIMESTAMPTZ '2025-11-03 07:00+00' + g * INTERVAL '1 second', %(nurse)s
FROM pg_catalog.generate_series(1, %(rows)s) AS g
CROSS JOIN (SELECT pg_catalog.array_agg(x.id ORDER BY x.id) AS ids,
                   pg_catalog.array_agg(x.tenant_id ORDER BY x.id) AS tenants,
                   pg_catalog.count(*)::integer AS n
            FROM public.patients AS x) AS p

-- name: bulk_update
UPDATE public.patient_vitals
   SET heart_rate = heart_rate + 1, pain_score = mod(pain_score + 1, 11)
 WHERE recorded_by = %(nurse)s

-- name: bulk_delete
DELETE FROM public.patient_vitals WHERE recorded_by = %(nurse)s

-- name: set_claims
-- What PostgREST sets for a signed-in student; simtrail records it as the actor.
SELECT pg_catalog.set_config('request.jwt.claims', %(claims)s, false)

-- name: nurse_rows
SELECT pg_catalog.count(*) AS n FROM public.patient_vitals WHERE recorded_by = ANY(%(nurses)s)
