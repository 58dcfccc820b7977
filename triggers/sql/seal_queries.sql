-- The queries of sealing and chain verification (triggers/sealing.py), by name.

-- name: seal_batch
SELECT simtrail.seal_batch(%(limit)s) AS result

-- name: record_hash
SELECT r.hash FROM simtrail.chain_records AS r WHERE r.id = %(id)s

-- name: sign_record
SELECT simtrail.sign_record(%(id)s, %(signature)s, %(key_id)s) AS signed

-- name: verify_chains
SELECT simtrail.verify_chains(%(tenant)s, %(all)s) AS result

-- name: records
SELECT r.id, r.kind, r.hash, r.signature, r.key_id
FROM simtrail.chain_records AS r ORDER BY r.id

-- name: repeatable_read
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY
