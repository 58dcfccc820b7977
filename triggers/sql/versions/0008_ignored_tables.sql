-- simtrail schema, version 9: tables someone said are not tenant data.
-- `simtrail config ignore TABLE` puts a table here so that discovery stops
-- proposing it and doctor stops calling it uncovered. Kept by name (schema
-- and table, as regclass prints them), not by OID: a name survives a dump
-- and restore.

CREATE TABLE simtrail.ignored_tables (
    table_name text PRIMARY KEY,
    reason     text,
    ignored_at timestamptz NOT NULL DEFAULT now(),
    ignored_by text NOT NULL DEFAULT session_user
);

-- The old discover() kept its work in a temp table; its replacement takes
-- the tables to include anyway and returns more columns.
DROP FUNCTION IF EXISTS simtrail.discover();

REVOKE ALL ON ALL TABLES IN SCHEMA simtrail FROM PUBLIC;
