-- simtrail schema, version 2: marks, rewinds, and tagging a rewind's own changes.

-- A named point in one tenant's history. The snapshot says exactly which
-- transactions had committed when the mark was taken, so a mark needs no lock
-- and is exact while other sessions keep writing.
CREATE TABLE simtrail.marks (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id  text NOT NULL,
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    snapshot   pg_snapshot NOT NULL,
    -- Changes below this id were all committed before the mark: a rewind
    -- never needs to look further back than this.
    scan_from  bigint NOT NULL,
    created_by jsonb NOT NULL,
    CONSTRAINT marks_name_check CHECK (name <> '' AND name !~ '[[:cntrl:]]')
);
CREATE INDEX marks_tenant_name_idx ON simtrail.marks (tenant_id, name, id);

-- One row per rewind that was applied (dry runs leave nothing).
CREATE TABLE simtrail.rewinds (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   text NOT NULL,
    target      text NOT NULL,
    -- Only the rewind's own transaction may tag changes with its id.
    xact_id     xid8 NOT NULL DEFAULT pg_current_xact_id(),
    started_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    report      jsonb
);
CREATE INDEX rewinds_tenant_idx ON simtrail.rewinds (tenant_id, id);

-- The changes a rewind makes are captured like any others, and tagged.
ALTER TABLE simtrail.transactions ADD COLUMN rewind_id bigint;

-- An update that changed the primary key keeps the old key here (row_pk
-- holds the new one), so a rewind can pair keys without reading images.
ALTER TABLE simtrail.changes ADD COLUMN old_pk jsonb;

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
       c.old_pk
FROM simtrail.changes AS c
LEFT JOIN simtrail.transactions AS t USING (xact_id);

REVOKE ALL ON ALL TABLES IN SCHEMA simtrail FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA simtrail FROM PUBLIC;
