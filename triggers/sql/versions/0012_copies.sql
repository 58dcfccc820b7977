-- simtrail schema, version 12: the reference graph and copies (clone a class,
-- copy a subtree, import a snapshot).
--
-- Table names are stored as captured_tables spells them (schema-qualified,
-- regclass text form); column names as they are in the catalog.

-- References without a foreign key: a column holding the key of a row of
-- another (or the same) configured table, perhaps as text. Copies remap them
-- like foreign keys. The referenced column is the primary key, or a column
-- unique on its own or together with the tenant column.
CREATE TABLE simtrail.refs (
    table_name  text NOT NULL,
    column_name text NOT NULL,
    ref_table   text NOT NULL,
    ref_column  text NOT NULL,
    added_at    timestamptz NOT NULL DEFAULT now(),
    added_by    text NOT NULL DEFAULT session_user,
    PRIMARY KEY (table_name, column_name)
);

-- What a copy writes into a column instead of the source's value. Operator
-- configuration: only the owner writes it (through simtrail.set_copy_rule,
-- which validates an expression against the column before storing it).
CREATE TABLE simtrail.copy_rules (
    table_name  text NOT NULL,
    column_name text NOT NULL,
    rule        text NOT NULL,
    expression  text,
    set_at      timestamptz NOT NULL DEFAULT now(),
    set_by      text NOT NULL DEFAULT session_user,
    PRIMARY KEY (table_name, column_name),
    CONSTRAINT copy_rules_rule_check CHECK (rule IN ('keep', 'default', 'null', 'sql')),
    CONSTRAINT copy_rules_expression_check CHECK ((rule = 'sql') = (expression IS NOT NULL))
);

-- One row per copy that committed: a clone, a subtree copy or a snapshot
-- import. `source` says what was copied (tenant and target, table and key,
-- or the document's metadata).
CREATE TABLE simtrail.copies (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('clone', 'copy', 'import')),
    source_tenant text,
    target_tenant text NOT NULL,
    source        jsonb NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text NOT NULL DEFAULT session_user,
    xact_id       xid8 NOT NULL DEFAULT pg_current_xact_id(),
    report        jsonb
);
CREATE INDEX copies_target_idx ON simtrail.copies (target_tenant, id);

-- Every copied row's old and new primary key, for `diff --against` and audit.
-- No foreign key to simtrail.copies: only simtrail writes either table, and
-- a per-row check would cost a large clone as much as writing its keys.
-- Read a copy at a time (by copy_id), so that is the one index: a key index
-- on the jsonb keys would double what a large clone spends recording them.
CREATE TABLE simtrail.copy_keys (
    copy_id    bigint NOT NULL,
    table_name text NOT NULL,
    old_key    jsonb NOT NULL,
    new_key    jsonb NOT NULL
);
CREATE INDEX copy_keys_copy_idx ON simtrail.copy_keys (copy_id);

-- Work tables of a copy in progress (see 0004 for why they are not temp
-- tables): rows to copy, when they do not come from the live tables, and
-- the old-to-new map of every column set that a reference points at.
-- `cols` names the columns (comma-separated); values are their text form,
-- one column as itself, several as a jsonb array. The rows for a table's
-- primary key also hold the generated values (new_vals) and both keys as
-- objects, as simtrail.copy_keys keeps them.
-- Text compared in the "C" collation: the work tables' keys are compared
-- for equality only, and a locale's rules cost several times as much.
CREATE UNLOGGED TABLE simtrail.copy_rows (
    call_id    xid8 NOT NULL,
    table_name text COLLATE "C" NOT NULL,
    key        jsonb NOT NULL,
    img        jsonb NOT NULL
);
CREATE INDEX copy_rows_call_idx ON simtrail.copy_rows (call_id, table_name);

CREATE UNLOGGED TABLE simtrail.copy_map (
    call_id    xid8 NOT NULL,
    table_name text COLLATE "C" NOT NULL,
    cols       text COLLATE "C" NOT NULL,
    old_value  text COLLATE "C" NOT NULL,
    new_value  text,
    new_vals   jsonb,
    old_key    jsonb,
    new_key    jsonb
);
CREATE INDEX copy_map_call_idx ON simtrail.copy_map (call_id, table_name, cols, old_value);

REVOKE ALL ON ALL TABLES IN SCHEMA simtrail FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA simtrail FROM PUBLIC;
