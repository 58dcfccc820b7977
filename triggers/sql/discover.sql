-- Discovery (which tables hold class data and how each reaches its tenant)
-- and the tables a person said are not tenant data.
-- Re-applied by every install (CREATE OR REPLACE), after the versioned files.
--
-- The rule, by structure rather than by name alone:
--   * the tenant table is any table a `tenant_id` column points at (a foreign
--     key); catalogues are the tables the tenant table itself points at
--     (programs, terms). Neither is tenant data: their rows are shared by
--     classes, and a rewind of one class must never delete them.
--   * a table with its own `tenant_id` column is tenant data (0 hops);
--   * so is a table with a NOT NULL single-column foreign key to tenant data,
--     one or two hops from a table with its own tenant_id. Only NOT NULL
--     references count: a nullable one (a user's default class, an audit
--     row's optional patient) means the row can exist without the class, so
--     a rewind of the class must not own it.
--   * a table that refers to the tenant table through another column
--     (user_profiles.default_tenant_id) is a user or catalogue table;
--     tables three hops away, or reached only through nullable references,
--     are reported as not tenant data too, with the reason.
-- p_include names tables to treat as tenant data anyway: they are no longer
-- shared, their nullable references count, and three hops are allowed.

CREATE OR REPLACE FUNCTION simtrail.discover(p_include text[])
RETURNS TABLE (
    table_name text,
    reaches_tenant text,
    has_tenant_id boolean,
    has_patient_id boolean,
    parent_table text,
    parent_column text,
    configured boolean,
    status text,
    reason text
)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH rels AS (
        SELECT c.oid AS relid
        FROM pg_catalog.pg_class AS c
        JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
          AND n.nspname NOT IN ('simtrail', 'information_schema') AND n.nspname !~ '^pg_'
    ), included AS (
        SELECT pg_catalog.to_regclass(CASE WHEN pg_catalog.strpos(i, '.') > 0 THEN i
                                           ELSE 'public.' || pg_catalog.quote_ident(i) END)::oid
               AS relid
        FROM pg_catalog.unnest(coalesce(p_include, ARRAY[]::text[])) AS i
    ), fks AS (
        SELECT k.conrelid AS relid, k.confrelid AS target, a.attname::text AS col,
               a.attnotnull AS not_null, k.conname::text AS conname
        FROM pg_catalog.pg_constraint AS k
        JOIN pg_catalog.pg_attribute AS a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
        WHERE k.contype = 'f' AND pg_catalog.cardinality(k.conkey) = 1
          AND k.conrelid <> k.confrelid
          AND k.conrelid IN (SELECT r.relid FROM rels AS r)
          AND k.confrelid IN (SELECT r.relid FROM rels AS r)
    ), tenant_tables AS (
        SELECT DISTINCT f.target AS relid FROM fks AS f WHERE f.col = 'tenant_id'
    ), shared AS (
        SELECT t.relid, 1 AS rank, 'the tenant table: tenant_id columns point at it' AS why
        FROM tenant_tables AS t
        UNION ALL
        (SELECT DISTINCT ON (f.target) f.target, 2,
                pg_catalog.format('a catalogue: the tenant table %s points at it through %s',
                                  f.relid::regclass, f.col)
         FROM fks AS f
         WHERE f.relid IN (SELECT t.relid FROM tenant_tables AS t)
           AND f.target NOT IN (SELECT t.relid FROM tenant_tables AS t)
         ORDER BY f.target, f.conname)
    ), excluded AS (
        SELECT s.relid FROM shared AS s WHERE s.relid NOT IN (SELECT i.relid FROM included AS i
                                                              WHERE i.relid IS NOT NULL)
    ), edges AS (
        SELECT f.*, f.relid IN (SELECT i.relid FROM included AS i WHERE i.relid IS NOT NULL)
                    AS asked
        FROM fks AS f
        WHERE f.relid NOT IN (SELECT e.relid FROM excluded AS e)
          AND f.target NOT IN (SELECT e.relid FROM excluded AS e)
    ), lvl0 AS (
        SELECT r.relid, 0 AS depth, NULL::oid AS target, NULL::text AS col
        FROM rels AS r
        WHERE r.relid NOT IN (SELECT e.relid FROM excluded AS e)
          AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute AS a
                      WHERE a.attrelid = r.relid AND a.attname = 'tenant_id'
                        AND a.attnum > 0 AND NOT a.attisdropped)
    ), lvl1 AS (
        SELECT DISTINCT ON (e.relid) e.relid, 1 AS depth, e.target, e.col
        FROM edges AS e
        WHERE (e.not_null OR e.asked)
          AND e.target IN (SELECT l.relid FROM lvl0 AS l)
          AND e.relid NOT IN (SELECT l.relid FROM lvl0 AS l)
        ORDER BY e.relid, (e.col = 'patient_id'
                           AND e.target = pg_catalog.to_regclass('public.patients')) DESC,
                 e.conname
    ), lvl2 AS (
        SELECT DISTINCT ON (e.relid) e.relid, 2 AS depth, e.target, e.col
        FROM edges AS e
        WHERE (e.not_null OR e.asked)
          AND e.target IN (SELECT l.relid FROM lvl1 AS l)
          AND e.relid NOT IN (SELECT l.relid FROM lvl0 AS l UNION ALL SELECT l.relid FROM lvl1 AS l)
        ORDER BY e.relid, e.conname
    ), lvl3 AS (
        SELECT DISTINCT ON (e.relid) e.relid, 3 AS depth, e.target, e.col, e.asked
        FROM edges AS e
        WHERE (e.not_null OR e.asked)
          AND e.target IN (SELECT l.relid FROM lvl2 AS l)
          AND e.relid NOT IN (SELECT l.relid FROM lvl0 AS l UNION ALL SELECT l.relid FROM lvl1 AS l
                              UNION ALL SELECT l.relid FROM lvl2 AS l)
        ORDER BY e.relid, e.asked DESC, e.conname
    ), reached AS (
        SELECT l.relid, l.depth, l.target, l.col FROM lvl0 AS l
        UNION ALL SELECT l.relid, l.depth, l.target, l.col FROM lvl1 AS l
        UNION ALL SELECT l.relid, l.depth, l.target, l.col FROM lvl2 AS l
        UNION ALL SELECT l.relid, l.depth, l.target, l.col FROM lvl3 AS l WHERE l.asked
    ), flagged AS (
        -- Why each table that is not reached is not tenant data; the first
        -- reason (lowest rank) wins.
        SELECT DISTINCT ON (x.relid) x.relid, x.why
        FROM (
            SELECT s.relid, s.rank, s.why FROM shared AS s
            UNION ALL
            SELECT f.relid, 3,
                   pg_catalog.format('a user or catalogue table: %s → %s refers to a tenant but is'
                                     ' not a tenant_id column', f.col, f.target::regclass)
            FROM fks AS f
            WHERE f.target IN (SELECT t.relid FROM tenant_tables AS t) AND f.col <> 'tenant_id'
            UNION ALL
            SELECT l.relid, 4,
                   pg_catalog.format('three hops from its tenant (%s → %s); discovery proposes at'
                                     ' most two', l.col, l.target::regclass)
            FROM lvl3 AS l WHERE NOT l.asked
            UNION ALL
            SELECT e.relid, 5,
                   pg_catalog.format('reaches tenant data only through the nullable reference'
                                     ' %s → %s', e.col, e.target::regclass)
            FROM edges AS e
            WHERE NOT e.not_null AND e.target IN (SELECT r.relid FROM reached AS r)
        ) AS x
        WHERE x.relid NOT IN (SELECT r.relid FROM reached AS r)
        ORDER BY x.relid, x.rank, x.why
    ), found AS (
        SELECT r.relid, 'proposed' AS status, NULL::text AS why, r.depth, r.target, r.col
        FROM reached AS r
        UNION ALL
        SELECT f.relid, 'not_tenant_data', f.why, NULL, NULL, NULL FROM flagged AS f
    )
    SELECT f.relid::regclass::text,
           CASE WHEN f.status <> 'proposed' THEN NULL
                WHEN f.depth = 0 THEN 'its tenant_id column'
                ELSE pg_catalog.format('%s → %s', f.col, f.target::regclass) END,
           f.status = 'proposed' AND f.depth = 0,
           CASE WHEN f.status <> 'proposed' THEN false
                WHEN f.depth = 0 THEN EXISTS (
                    SELECT 1 FROM pg_catalog.pg_attribute AS a
                    WHERE a.attrelid = f.relid AND a.attname = 'patient_id' AND NOT a.attisdropped)
                ELSE f.col = 'patient_id' AND f.target = pg_catalog.to_regclass('public.patients')
           END,
           CASE WHEN f.status = 'proposed' AND f.depth > 0
                     AND NOT (f.col = 'patient_id'
                              AND f.target = pg_catalog.to_regclass('public.patients'))
                THEN f.target::regclass::text END,
           CASE WHEN f.status = 'proposed' AND f.depth > 0
                     AND NOT (f.col = 'patient_id'
                              AND f.target = pg_catalog.to_regclass('public.patients'))
                THEN f.col END,
           EXISTS (SELECT 1 FROM simtrail.config_rows() AS c WHERE c.relid = f.relid),
           CASE WHEN EXISTS (SELECT 1 FROM simtrail.ignored_tables AS g
                             WHERE g.table_name = f.relid::regclass::text)
                THEN 'ignored' ELSE f.status END,
           coalesce((SELECT g.reason FROM simtrail.ignored_tables AS g
                     WHERE g.table_name = f.relid::regclass::text), f.why)
    FROM found AS f
    ORDER BY 1
$$;

-- `simtrail config ignore`: say on purpose that a table is not tenant data.
-- Returns the name it was stored under (schema-qualified).
CREATE OR REPLACE FUNCTION simtrail.ignore_table(p_table text, p_reason text)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_rel regclass;
    v_name text;
BEGIN
    BEGIN
        v_rel := pg_catalog.to_regclass(CASE WHEN pg_catalog.strpos(p_table, '.') > 0 THEN p_table
                                             ELSE 'public.' || pg_catalog.quote_ident(p_table) END);
    EXCEPTION WHEN syntax_error OR invalid_name OR feature_not_supported THEN
        RAISE EXCEPTION '% is not a valid table name', p_table USING ERRCODE = 'invalid_parameter_value';
    END;
    IF v_rel IS NULL THEN
        RAISE EXCEPTION 'table % does not exist', p_table USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_name := v_rel::text;
    IF EXISTS (SELECT 1 FROM simtrail.config_rows() AS c WHERE c.relid = v_rel) THEN
        RAISE EXCEPTION '% is in simulation_table_config; disable it instead of ignoring it', v_name
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM simtrail.ignored_tables AS g WHERE g.table_name = v_name) THEN
        RAISE EXCEPTION '% is already ignored', v_name USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO simtrail.ignored_tables (table_name, reason) VALUES (v_name, p_reason);
    RETURN v_name;
END
$$;

-- Works on names as stored, so a table that was dropped can still be unignored.
CREATE OR REPLACE FUNCTION simtrail.unignore_table(p_table text)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_name text;
BEGIN
    DELETE FROM simtrail.ignored_tables AS g
    WHERE g.table_name IN (p_table, 'public.' || p_table,
                           (SELECT pg_catalog.to_regclass(CASE WHEN pg_catalog.strpos(p_table, '.') > 0
                                    THEN p_table ELSE 'public.' || pg_catalog.quote_ident(p_table) END)::text
                            WHERE p_table !~ '[^[:alnum:]_."]'))
    RETURNING g.table_name INTO v_name;
    IF v_name IS NULL THEN
        RAISE EXCEPTION '% is not ignored', p_table USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN v_name;
END
$$;
