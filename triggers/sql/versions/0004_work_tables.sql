-- simtrail schema, version 4: work tables owned by simtrail instead of
-- per-call temp tables, and the instructors the optional RPC wrappers admit.
--
-- A SECURITY DEFINER function that writes to a temp table writes to whatever
-- the caller created under that name first (with the caller's triggers, run
-- as simtrail's owner). These tables live in schema simtrail, which no one
-- but the owner can create in or read. Each call keys its rows by its
-- transaction id and deletes them before it returns, so no row is ever
-- committed and concurrent calls never see each other's rows (MVCC hides
-- uncommitted rows anyway; the key keeps index scans to this call's rows).
-- UNLOGGED: scratch rows need no WAL, and a crash empties the tables, which
-- is their normal state.
--
-- Their statistics say nothing useful (they are empty between calls), so the
-- queries over them are written to stay linear whatever the planner believes.

CREATE UNLOGGED TABLE simtrail.rewind_keys (
    call_id    xid8 NOT NULL,
    table_name text NOT NULL,
    key        jsonb NOT NULL,
    target_img jsonb,
    last_img   jsonb
);
CREATE INDEX rewind_keys_call_idx ON simtrail.rewind_keys (call_id, table_name);

CREATE UNLOGGED TABLE simtrail.rewind_net (
    call_id     xid8 NOT NULL,
    table_name  text NOT NULL,
    key         jsonb NOT NULL,
    target_img  jsonb,
    last_img    jsonb,
    live_img    jsonb,
    live_tenant text,
    action      text,
    drift       boolean NOT NULL DEFAULT false
);
CREATE INDEX rewind_net_call_idx ON simtrail.rewind_net (call_id, table_name, action);

CREATE UNLOGGED TABLE simtrail.compact_cuts (
    call_id   xid8 NOT NULL,
    ord       bigint NOT NULL,
    tenant_id text,
    snapshot  pg_snapshot NOT NULL,
    snap_xmax xid8 NOT NULL
);
CREATE INDEX compact_cuts_call_idx ON simtrail.compact_cuts (call_id, snap_xmax, ord);

CREATE UNLOGGED TABLE simtrail.compact_segments (
    call_id   xid8 NOT NULL,
    tenant_id text NOT NULL,
    xact_id   xid8 NOT NULL,
    seg       bigint,
    actor     jsonb,
    rewind_id bigint,
    PRIMARY KEY (call_id, tenant_id, xact_id)
);

CREATE UNLOGGED TABLE simtrail.compact_members (
    call_id    xid8 NOT NULL,
    id         bigint NOT NULL,
    net_id     bigint NOT NULL,
    changed_at timestamptz,
    PRIMARY KEY (call_id, id)
);

CREATE UNLOGGED TABLE simtrail.compact_folded (
    call_id    xid8 NOT NULL,
    id         bigint NOT NULL,
    net_from   bigint,
    net_count  integer,
    tenant_id  text,
    table_name text,
    row_pk     jsonb,
    before_img jsonb,
    after_img  jsonb,
    xact_id    xid8,
    changed_at timestamptz
);
CREATE INDEX compact_folded_call_idx ON simtrail.compact_folded (call_id);

-- Who may call the public RPC wrappers (`simtrail rpc install`) for which
-- tenant: the `sub` of PostgREST's verified JWT. Kept by operators with
-- `simtrail instructor add/remove/list`; app roles can neither read nor write it.
CREATE TABLE simtrail.instructors (
    sub       text NOT NULL,
    tenant_id text NOT NULL,
    added_at  timestamptz NOT NULL DEFAULT now(),
    added_by  text NOT NULL DEFAULT session_user,
    PRIMARY KEY (sub, tenant_id),
    CONSTRAINT instructors_sub_check CHECK (sub <> '' AND sub !~ '[[:cntrl:]]')
);

REVOKE ALL ON ALL TABLES IN SCHEMA simtrail FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA simtrail FROM PUBLIC;
