-- simtrail schema, version 1.
-- Applied once, inside the installer's transaction, by a role that owns the
-- application's tables (a superuser locally, `postgres` on Supabase).

CREATE SCHEMA simtrail;
REVOKE ALL ON SCHEMA simtrail FROM PUBLIC;

CREATE TABLE simtrail.schema_version (
    version      integer PRIMARY KEY,
    name         text NOT NULL,
    installed_at timestamptz NOT NULL DEFAULT now(),
    installed_by text NOT NULL DEFAULT session_user
);

-- One row per transaction that changed a captured table. The actor is taken
-- once, at the transaction's first captured statement, so bulk statements do
-- not repeat it on every row.
CREATE TABLE simtrail.transactions (
    xact_id         xid8 PRIMARY KEY,
    first_change_id bigint NOT NULL,
    started_at      timestamptz NOT NULL,
    actor           jsonb NOT NULL
);

CREATE SEQUENCE simtrail.change_id_seq AS bigint;

-- The raw log. `tenant_id` says whose history a row belongs to; the tenant key
-- is kept as text so one log serves uuid, integer and text tenant columns.
-- `moved` marks the two halves of a row that changed tenant: 'out' in the old
-- tenant's history, 'in' in the new one's.
CREATE TABLE simtrail.changes (
    id         bigint PRIMARY KEY DEFAULT nextval('simtrail.change_id_seq'),
    tenant_id  text,
    table_name text NOT NULL,
    operation  text NOT NULL,
    row_pk     jsonb NOT NULL,
    old_data   jsonb,
    new_data   jsonb,
    xact_id    xid8 NOT NULL DEFAULT pg_current_xact_id(),
    changed_at timestamptz NOT NULL DEFAULT statement_timestamp(),
    moved      text,
    CONSTRAINT changes_operation_check
        CHECK (operation IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')),
    CONSTRAINT changes_moved_check CHECK (moved IN ('in', 'out'))
);
ALTER SEQUENCE simtrail.change_id_seq OWNED BY simtrail.changes.id;

-- A tenant's history in order: what a rewind and `history` read.
CREATE INDEX changes_tenant_id_idx ON simtrail.changes (tenant_id, id);
-- Rows whose tenant could not be read from live rows (a parent removed by the
-- same cascade). Tiny in steady state, so it costs the hot path almost nothing.
CREATE INDEX changes_unresolved_idx ON simtrail.changes (xact_id) WHERE tenant_id IS NULL;

-- The tables simtrail captures, as resolved from the config at the last sync.
CREATE TABLE simtrail.captured_tables (
    relid        oid PRIMARY KEY,
    table_name   text NOT NULL UNIQUE,
    function_name text NOT NULL,
    pk_columns   text[] NOT NULL,
    tenant_path  jsonb NOT NULL,
    trigger_hash text NOT NULL,
    attached_at  timestamptz NOT NULL DEFAULT now()
);

CREATE VIEW simtrail.simulation_tenant_changes AS
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
       c.moved
FROM simtrail.changes AS c
LEFT JOIN simtrail.transactions AS t USING (xact_id);

REVOKE ALL ON ALL TABLES IN SCHEMA simtrail FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA simtrail FROM PUBLIC;
