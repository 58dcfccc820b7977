-- Queries the daemon runs, by name (see simtrail.sqlfile).

-- name: try_lease
-- Renew the lease for ttl seconds by the server's clock when it is ours; take
-- it when it has expired or the session that last renewed it is gone. Two
-- standbys racing for it queue on the row, and the second then sees it taken.
UPDATE simtrail.daemon_lease AS l
SET holder = %(holder)s,
    holder_pid = pg_catalog.pg_backend_pid(),
    acquired_at = CASE WHEN l.holder = %(holder)s THEN l.acquired_at
                       ELSE pg_catalog.clock_timestamp() END,
    renewed_at = pg_catalog.clock_timestamp(),
    expires_at = pg_catalog.clock_timestamp() + pg_catalog.make_interval(secs => %(ttl)s)
WHERE l.holder = %(holder)s
   OR l.expires_at <= pg_catalog.clock_timestamp()
   OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity AS a WHERE a.pid = l.holder_pid)
RETURNING true AS held

-- name: release_lease
UPDATE simtrail.daemon_lease AS l
SET expires_at = pg_catalog.clock_timestamp(), holder_pid = NULL
WHERE l.holder = %(holder)s

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

-- name: log_bytes
SELECT pg_catalog.pg_total_relation_size('simtrail.changes') AS bytes

-- name: vacuum_log
-- The log, and compaction's work tables, whose rows every batch deletes.
-- Plain VACUUM: never FULL, which would lock out every writer.
VACUUM simtrail.changes, simtrail.compact_cuts, simtrail.compact_segments

-- name: log_pages
SELECT simtrail.log_pages() AS pages

-- name: relocate_log_rows
SELECT simtrail.relocate_log_rows(%(from_page)s, %(to_page)s) AS moved

-- name: reindex_leftovers
-- What a cancelled REINDEX CONCURRENTLY leaves behind: invalid copies that
-- every write to the log would still pay for.
SELECT i.indexrelid::regclass::text AS name
FROM pg_catalog.pg_index AS i JOIN pg_catalog.pg_class AS c ON c.oid = i.indexrelid
WHERE i.indrelid = 'simtrail.changes'::regclass AND NOT i.indisvalid
  AND c.relname ~ '_cc(new|old)[0-9]*$'

-- name: drop_index_concurrently
DROP INDEX CONCURRENTLY IF EXISTS {index}

-- name: reindex_log
-- Rebuilt beside the old ones: writers go on meanwhile.
REINDEX TABLE CONCURRENTLY simtrail.changes
