-- The export benchmark: a history of charted vitals, grown in steps.

-- name: vitals_history
-- p_rows new vitals, spread over every seeded patient, in one statement:
-- each row is one captured INSERT with a ten-column image.
INSERT INTO public.patient_vitals (tenant_id, patient_id, temperature, blood_pressure,
                                   heart_rate, respiratory_rate, oxygen_saturation, pain_score)
SELECT p.tenant_id, p.id, 36.0 + (g %% 30) / 10.0, (110 + g %% 30)::text || '/' || (70 + g %% 20)::text,
       60 + g %% 40, 12 + g %% 8, 94.0 + (g %% 60) / 10.0, (g %% 11)::smallint
FROM pg_catalog.generate_series(1, %(rows)s) AS g
JOIN (SELECT p.id, p.tenant_id, (pg_catalog.row_number() OVER (ORDER BY p.id)) - 1 AS n,
             pg_catalog.count(*) OVER () AS total
      FROM public.patients AS p WHERE p.tenant_id IS NOT NULL) AS p
  ON p.n = g %% p.total

-- name: seal_batch
SELECT simtrail.seal_batch(%(limit)s) AS r

-- name: sealed
SELECT pg_catalog.count(*) AS n FROM simtrail.seals
