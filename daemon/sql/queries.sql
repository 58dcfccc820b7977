-- Queries the daemon runs, by name (see simtrail.sqlfile).

-- name: try_lease
SELECT pg_catalog.pg_try_advisory_lock(pg_catalog.hashtextextended('simtrail daemon leader', 0)) AS held

-- name: lease_alive
SELECT 1 AS alive

-- name: installed
SELECT pg_catalog.to_regclass('simtrail.daemon_state') IS NOT NULL AS installed

-- name: tick
SELECT simtrail.tick(pg_catalog.make_interval(secs => %(promise)s)) AS tick

-- name: thin_ticks
SELECT simtrail.thin_ticks(pg_catalog.make_interval(secs => %(window)s),
                           pg_catalog.make_interval(secs => %(keep_every)s)) AS deleted

-- name: compact_batch
SELECT simtrail.compact_batch(pg_catalog.make_interval(secs => %(window)s), %(batch)s) AS batch

-- name: apply_retention
SELECT simtrail.apply_retention(%(days)s) AS retention

-- name: sync
SELECT s.action, s.table_name, s.detail FROM simtrail.sync_all(true) AS s

-- name: stats
SELECT simtrail.daemon_stats(pg_catalog.make_interval(secs => %(window)s)) AS stats

-- name: listen
LISTEN simtrail

-- name: notify_config
SELECT pg_catalog.pg_notify('simtrail', 'config')

-- name: heal_fingerprint
-- Changes whenever the config or any capture trigger changes, so a new
-- config row is acted on at the next poll instead of the next heal_interval.
SELECT pg_catalog.md5(
           coalesce((SELECT pg_catalog.string_agg(c::text, ',' ORDER BY c::text)
                     FROM public.simulation_table_config AS c), '')
           || coalesce((SELECT pg_catalog.string_agg(
                                   g.tgrelid::text || g.tgname || g.tgenabled::text
                                   || coalesce(pg_catalog.obj_description(g.oid, 'pg_trigger'), ''),
                                   ',' ORDER BY g.oid)
                        FROM pg_catalog.pg_trigger AS g
                        WHERE g.tgname LIKE 'simtrail\_capture\_%'), '')) AS fingerprint
