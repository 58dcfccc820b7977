-- The seal benchmark's SQL (bench/seal.py), by name.

-- name: history
-- N original changes as capture writes them, spread over 50 tenants, in
-- transactions of 1,000 (the xids are this statement's own, for speed: one
-- transaction row carries the actor). Images have eight columns of mixed
-- types, like a charted vital sign.
WITH x AS (
    INSERT INTO simtrail.transactions (xact_id, first_change_id, started_at, actor)
    SELECT pg_catalog.pg_current_xact_id(), pg_catalog.nextval('simtrail.change_id_seq'),
           pg_catalog.now(), '{"sub": "bench", "role": "authenticated", "app": "simtrail bench"}'
    RETURNING xact_id
)
INSERT INTO simtrail.changes (tenant_id, table_name, operation, row_pk, old_data, new_data,
                              xact_id, changed_at)
SELECT 'tenant-' || (g %% 50), 'public.vital_signs',
       CASE WHEN g %% 3 = 0 THEN 'INSERT' ELSE 'UPDATE' END,
       pg_catalog.jsonb_build_object('id', g / 3),
       CASE WHEN g %% 3 <> 0 THEN pg_catalog.jsonb_build_object(
           'id', g / 3, 'patient_id', 'p' || (g %% 400), 'pulse', 60 + g %% 40,
           'bp', (110 + g %% 30) || '/' || (70 + g %% 20), 'temp', 36.5 + (g %% 10) / 10.0,
           'note', 'checked ' || g, 'taken_at', '2026-12-01T10:00:00+00:00', 'flag', g %% 7 = 0) END,
       pg_catalog.jsonb_build_object(
           'id', g / 3, 'patient_id', 'p' || (g %% 400), 'pulse', 61 + g %% 40,
           'bp', (111 + g %% 30) || '/' || (71 + g %% 20), 'temp', 36.6 + (g %% 10) / 10.0,
           'note', 'rechecked ' || g, 'taken_at', '2026-12-01T10:05:00+00:00', 'flag', g %% 5 = 0),
       (SELECT x.xact_id FROM x), pg_catalog.clock_timestamp()
FROM pg_catalog.generate_series(1, %(n)s) AS g

-- name: seal_batch
SELECT simtrail.seal_batch(%(limit)s) AS result

-- name: canon_only
-- The encoding alone, over every original, as seal_batch runs it (rendered
-- inline; the actor left NULL): how much of a seal it is.
DO $$
BEGIN
    EXECUTE 'SELECT pg_catalog.count(' || simtrail.render_canon('c', '1', 'k.secret')
        || ') FROM (SELECT c.*, NULL::jsonb AS actor FROM simtrail.changes AS c) AS c,'
        || ' simtrail.seal_secret AS k';
END
$$

-- name: hash_only
-- One sha256 per change over text of the canonical encoding's size.
SELECT pg_catalog.count(pg_catalog.sha256(pg_catalog.convert_to(c.new_data::text || c.row_pk::text
           || pg_catalog.repeat('x', 600), 'UTF8')))
FROM simtrail.changes AS c

-- name: verify
SELECT simtrail.verify_chains(NULL, true) AS result

-- name: reset
DELETE FROM simtrail.seals;
DELETE FROM simtrail.chain_heads;
DELETE FROM simtrail.chain_records;
UPDATE simtrail.seal_state SET generation = NULL, sweeping = NULL, xid_lo = '0', xid_hi = NULL,
                               next_id = NULL

-- name: sha256_calls
-- The cost of one sha256() call on a short input, over 500,000 calls.
SELECT pg_catalog.count(pg_catalog.sha256(pg_catalog.convert_to(g::text || '/new/patient_id', 'UTF8')))
FROM pg_catalog.generate_series(1, 500000) AS g

-- name: columns_per_change
-- Image columns per change: each costs two sha256 calls (salt, commitment).
SELECT (pg_catalog.sum(coalesce((SELECT pg_catalog.count(*) FROM pg_catalog.jsonb_object_keys(c.old_data)), 0)
                       + coalesce((SELECT pg_catalog.count(*) FROM pg_catalog.jsonb_object_keys(c.new_data)), 0))
        / pg_catalog.count(*))::float8 AS columns
FROM simtrail.changes AS c

-- name: commitments_only
-- The column commitments alone, rendered as seal_batch runs them.
DO $$
BEGIN
    EXECUTE 'SELECT pg_catalog.count(pg_catalog.jsonb_build_object(''old_data'', '
        || simtrail.render_commitments('c', 'old', 'k.secret') || ', ''new_data'', '
        || simtrail.render_commitments('c', 'new', 'k.secret')
        || ')::text) FROM simtrail.changes AS c, simtrail.seal_secret AS k';
END
$$
