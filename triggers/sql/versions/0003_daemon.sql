-- simtrail schema, version 3: what the daemon keeps. Ticks make time targets
-- exact; compaction replaces old changes by one net change per row between
-- cut points and moves the originals to a time-partitioned archive.

-- A tick is a point in time with the snapshot taken at it: a time target
-- resolves to the last tick at or before it, exactly like a mark.
CREATE TABLE simtrail.ticks (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    snapshot  pg_snapshot NOT NULL,
    scan_from bigint NOT NULL
);
CREATE INDEX ticks_at_idx ON simtrail.ticks (at);
CREATE INDEX marks_created_at_idx ON simtrail.marks (created_at);

-- A net change stands for net_count original changes of one row, from id
-- net_from up to its own id (the id of the last of them), all between the
-- same two cut points. Originals have both columns NULL.
ALTER TABLE simtrail.changes ADD COLUMN net_from bigint;
ALTER TABLE simtrail.changes ADD COLUMN net_count integer;

-- The originals, at full fidelity, with the actor of their transaction so
-- the archive reads on its own. One partition per UTC day of change time:
-- retention drops partitions instead of deleting rows.
CREATE TABLE simtrail.archive (
    id          bigint NOT NULL,
    tenant_id   text,
    table_name  text NOT NULL,
    operation   text NOT NULL,
    row_pk      jsonb NOT NULL,
    old_pk      jsonb,
    old_data    jsonb,
    new_data    jsonb,
    xact_id     xid8 NOT NULL,
    changed_at  timestamptz NOT NULL,
    moved       text,
    actor       jsonb,
    rewind_id   bigint,
    -- The id of the net change that replaced this one in the log.
    net_id      bigint NOT NULL,
    archived_at timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE (changed_at);
CREATE INDEX archive_tenant_idx ON simtrail.archive (tenant_id, id);

-- One row of daemon bookkeeping.
CREATE TABLE simtrail.daemon_state (
    singleton        boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    -- Every change with a smaller id has been through compaction.
    compacted_below  bigint NOT NULL DEFAULT 0,
    last_compacted_at timestamptz,
    -- History before this time has been dropped by retention.
    horizon          timestamptz
);
INSERT INTO simtrail.daemon_state DEFAULT VALUES;

CREATE OR REPLACE VIEW simtrail.simulation_tenant_changes AS
SELECT c.id,
       c.tenant_id,
       c.table_name,
       c.operation,
       c.row_pk,
       c.old_data,
       c.new_data,
       c.xact_id,
       c.changed_at,
       t.actor,
       c.moved,
       t.rewind_id,
       c.old_pk,
       c.net_from,
       c.net_count
FROM simtrail.changes AS c
LEFT JOIN simtrail.transactions AS t USING (xact_id);

REVOKE ALL ON ALL TABLES IN SCHEMA simtrail FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA simtrail FROM PUBLIC;
