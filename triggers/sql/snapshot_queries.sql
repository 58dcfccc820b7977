-- Named queries behind `simtrail snapshot`.

-- name: repeatable_read
-- An export reads every table and the log in one snapshot, without locking
-- the class against its writers (see simtrail.export_snapshot). Not READ
-- ONLY: a state at a target is staged in simtrail's work tables.
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ

-- name: export
-- jsonb_pretty keeps numbers exactly as PostgreSQL prints them (a numeric
-- read into a Python float would not be).
SELECT pg_catalog.jsonb_pretty(d.doc) AS document, d.doc -> 'snapshot_metadata' AS metadata
FROM (SELECT simtrail.export_snapshot(%(tenant)s, %(at)s) AS doc) AS d

-- name: import
SELECT simtrail.import_snapshot(%(doc)s::jsonb, %(to)s, %(options)s) AS report
