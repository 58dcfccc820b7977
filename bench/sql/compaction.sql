-- The compaction benchmark's SQL. The workload procedures it calls live in
-- compaction_workload.sql.

-- name: async_commit
-- History generation is set-up, not a measurement: its tens of thousands of
-- commits need not each wait for the disk.
SET synchronous_commit = off

-- name: sync_commit
SET synchronous_commit = on

-- name: initial_vitals
-- Each class's charting before launch: many vitals per patient.
INSERT INTO public.patient_vitals (tenant_id, patient_id, heart_rate, temperature, recorded_at)
SELECT p.tenant_id, p.id, 60 + g %% 40, 36.5 + (g %% 20) / 10.0,
       timestamptz '2025-11-03 07:00+00' + g * interval '1 minute'
FROM public.patients AS p, generate_series(1, %(per_patient)s) AS g

-- name: pick_hot
CALL public.bench_pick_hot(%(hour)s, %(hot)s, %(per_xact)s)

-- name: chart
CALL public.bench_chart(%(hour)s, %(from)s, %(to)s)

-- name: discharge
CALL public.bench_discharge()

-- name: probe_session
CALL public.bench_probe_session(%(tenant)s)

-- name: tenants
SELECT t.id::text AS id FROM public.tenants AS t ORDER BY t.id

-- name: tick
SELECT simtrail.tick() AS tick

-- name: mark
-- The probe marks `recent` again at each stage: the newest replaces the old.
SELECT simtrail.mark(%(tenant)s, %(name)s, true) AS mark

-- name: history
SELECT (SELECT count(*) FROM simtrail.changes) AS changes,
       (SELECT count(*) FROM simtrail.transactions) AS transactions,
       (SELECT count(*) FROM simtrail.ticks) AS ticks,
       (SELECT count(*) FROM simtrail.marks) AS marks,
       (SELECT count(*) FROM simtrail.changes WHERE tenant_id = %(tenant)s) AS tenant_changes,
       (SELECT count(*) FROM simtrail.changes WHERE operation = 'UPDATE') AS updates,
       (SELECT count(*) FROM simtrail.changes WHERE operation = 'INSERT') AS inserts,
       (SELECT count(*) FROM simtrail.changes WHERE operation = 'DELETE') AS deletes

-- name: change_count
SELECT count(*) AS n FROM simtrail.changes

-- name: stats
SELECT simtrail.daemon_stats('0') AS stats

-- name: log_bytes
SELECT pg_catalog.pg_total_relation_size('simtrail.changes') AS bytes

-- name: seal_all
-- Seal the whole history before compaction is timed: the daemon seals every
-- cycle, so history old enough to compact was sealed long before.
SELECT simtrail.seal_all(50000) AS result

-- name: thin_ticks
-- Keep every tick: the stand-in hourly ticks are all cut points.
SELECT simtrail.thin_ticks('0', '1 microsecond') AS deleted

-- name: compact_batch
SELECT simtrail.compact_batch('0', %(batch)s) AS result

-- name: rewind
SELECT simtrail.rewind(%(tenant)s, %(target)s, false) AS report

-- name: tenant_digest
-- One digest of every captured table's rows of the tenant: rewinds to the
-- same target must leave the same state before and after compaction.
SELECT md5(string_agg(s.table_name || ':' || s.row_count || ':' || s.checksum, ','
                      ORDER BY s.table_name)) AS digest
FROM simtrail.tenant_state(%(tenant)s) AS s

-- name: vacuum_analyze
VACUUM (ANALYZE)

-- name: vacuum_full_log
VACUUM (FULL, ANALYZE) simtrail.changes

-- name: id_range
SELECT min(c.id) AS lo, max(c.id) AS hi FROM simtrail.changes AS c

-- name: range_partitions
-- The archive partitions a range's rows need (created in the caller's
-- transaction, so a rollback takes them away again).
SELECT simtrail.ensure_archive_partitions(min(c.changed_at), max(c.changed_at)) AS created
FROM simtrail.changes AS c WHERE c.id >= %(lo)s AND c.id < %(hi)s

-- name: bare_move
-- The floor of compaction as designed: every change of one batch's id range
-- moved into the archive, with no cut points, folding or net changes.
WITH gone AS (
    DELETE FROM simtrail.changes AS c WHERE c.id >= %(lo)s AND c.id < %(hi)s
    RETURNING c.*
)
INSERT INTO simtrail.archive (id, tenant_id, table_name, operation, row_pk, old_pk, old_data,
                              new_data, xact_id, changed_at, moved, actor, rewind_id, net_id)
SELECT g.id, g.tenant_id, g.table_name, g.operation, g.row_pk, g.old_pk, g.old_data,
       g.new_data, g.xact_id, g.changed_at, g.moved, NULL, NULL, g.id
FROM gone AS g
