-- The queries of purge and diff (triggers/purging.py, triggers/diffing.py), by name.

-- name: purge
SELECT simtrail.purge_tenant(%(tenant)s, %(dry_run)s) AS report

-- name: repeatable_read
-- A diff reads the log and the live rows: one snapshot makes them agree.
-- Not READ ONLY: the staging writes this transaction's work rows (deleted
-- again, and the transaction is rolled back).
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ

-- name: diff_since
SELECT simtrail.diff_since(%(tenant)s, %(target)s) AS report

-- name: diff_against
SELECT simtrail.diff_against(%(tenant)s, %(template)s) AS report
