-- The queries of clone and copy (triggers/copying.py), by name.

-- name: clone
SELECT simtrail.clone_tenant(%(from)s, %(to)s, %(at)s, %(dry_run)s, %(mark)s) AS report

-- name: copy_subtree
SELECT simtrail.copy_subtree(%(table)s, %(key)s, %(to)s, %(options)s) AS report
