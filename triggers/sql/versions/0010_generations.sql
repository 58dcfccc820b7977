-- simtrail schema, version 11: surviving a dump and restore into another
-- cluster, and schema changes of captured tables.
--
-- Transaction ids and OIDs mean something only inside the cluster that made
-- them. A generation is one cluster's stretch of the log: changes with ids
-- from its first_change_id up to the next generation's first_change_id were
-- written there. Every change of an older generation had committed before any
-- snapshot of a later one, and none of a later generation is in an older
-- snapshot, so a cut compares xids only within its own generation.

CREATE TABLE simtrail.clusters (
    generation        integer PRIMARY KEY,
    -- pg_control_system(); NULL where the role may not read it.
    system_identifier bigint,
    -- The OID of simtrail.changes there: pg_dump never keeps OIDs.
    anchor_oid        oid NOT NULL,
    first_change_id   bigint NOT NULL,
    -- The next xid when the generation began.
    first_xid         xid8 NOT NULL,
    -- The last time the daemon, install or a tick looked: every change below
    -- seen_change_id existed then, and every transaction below seen_xmin had ended.
    seen_change_id    bigint NOT NULL,
    seen_xmin         xid8 NOT NULL,
    seen_at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- Changes captured between the restore and the first rebase whose side of
    -- the boundary the xids could not decide (they were taken as this one's).
    ambiguous         bigint NOT NULL DEFAULT 0
);

-- Actors of earlier generations' transactions, moved out of
-- simtrail.transactions so the new cluster's xids cannot collide with them.
CREATE TABLE simtrail.transactions_history (
    generation      integer NOT NULL,
    xact_id         xid8 NOT NULL,
    first_change_id bigint NOT NULL,
    started_at      timestamptz NOT NULL,
    actor           jsonb NOT NULL,
    rewind_id       bigint,
    PRIMARY KEY (generation, xact_id)
);

-- Every name each captured column has had, by attribute number: a rename
-- keeps the number, so old images' keys can be told from dropped columns.
CREATE TABLE simtrail.column_names (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    table_name text NOT NULL,
    attnum     smallint NOT NULL,
    name       text NOT NULL,
    seen_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (table_name, attnum, name)
);

-- Tables dropped from the database and retired from the config: their
-- history stays in the log, and rewinds leave it alone.
CREATE TABLE simtrail.retired_tables (
    table_name text PRIMARY KEY,
    retired_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    retired_by text NOT NULL DEFAULT session_user
);

-- The generation a mark or tick is taken in, after noticing a change of
-- cluster. Replaced by rebase.sql; defined here so the defaults below exist.
CREATE FUNCTION simtrail.current_generation()
RETURNS integer
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.max(g.generation) FROM simtrail.clusters AS g
$$;
CREATE FUNCTION simtrail.tick_generation()
RETURNS integer
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.max(g.generation) FROM simtrail.clusters AS g
$$;

INSERT INTO simtrail.clusters (generation, anchor_oid, first_change_id, first_xid,
                               seen_change_id, seen_xmin)
SELECT 1, 'simtrail.changes'::regclass::oid, 1,
       pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot()),
       (SELECT s.last_value + 1 FROM simtrail.change_id_seq AS s),
       pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot());

ALTER TABLE simtrail.marks ADD COLUMN generation integer NOT NULL DEFAULT 1;
ALTER TABLE simtrail.marks ALTER COLUMN generation SET DEFAULT simtrail.current_generation();
ALTER TABLE simtrail.ticks ADD COLUMN generation integer NOT NULL DEFAULT 1;
ALTER TABLE simtrail.ticks ALTER COLUMN generation SET DEFAULT simtrail.tick_generation();

-- The actor of a change comes from its own generation's transaction.
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
       coalesce(t.actor, h.actor) AS actor,
       c.moved,
       coalesce(t.rewind_id, h.rewind_id) AS rewind_id,
       c.old_pk,
       c.net_from,
       c.net_count
FROM simtrail.changes AS c
LEFT JOIN LATERAL (
    SELECT g.generation, g.generation = (SELECT pg_catalog.max(z.generation)
                                         FROM simtrail.clusters AS z) AS current
    FROM simtrail.clusters AS g
    WHERE g.first_change_id <= c.id ORDER BY g.generation DESC LIMIT 1
) AS gen ON true
LEFT JOIN simtrail.transactions AS t
       ON t.xact_id = c.xact_id AND gen.current IS DISTINCT FROM false
LEFT JOIN simtrail.transactions_history AS h
       ON h.xact_id = c.xact_id AND h.generation = gen.generation AND NOT gen.current;

REVOKE ALL ON ALL TABLES IN SCHEMA simtrail FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA simtrail FROM PUBLIC;

-- Compaction orders cut points generation by generation.
ALTER TABLE simtrail.compact_cuts ADD COLUMN generation integer;
