-- simtrail schema, version 13: what a rewind reads, and work tables compaction
-- no longer needs.
--
-- A rewind reads each change's key once; only a key change adds a second
-- event (the new key arriving). Those are rare, so they get an index of
-- their own instead of every change paying for a second pass or a lateral
-- expansion. Tiny in steady state: the capture path pays for it only on an
-- UPDATE that changes a primary key.
CREATE INDEX changes_key_changes_idx ON simtrail.changes (tenant_id, id)
    WHERE old_pk IS NOT NULL;

-- Compaction passes the rows it folds in arrays now, within one statement;
-- these work tables of version 4 are no longer written or read.
DROP TABLE simtrail.compact_members;
DROP TABLE simtrail.compact_folded;
