-- The copy engine: copy a set of rows of the captured tables into another
-- tenant, set-based, one statement per table and phase, with new primary
-- keys, the copy rules applied and every reference into the copy remapped.
-- Clones, subtree copies and snapshot imports (clone.sql, snapshot.sql) all
-- come here with a relation of source rows per table.
-- Re-applied by every install (CREATE OR REPLACE).

-- The SQL of a column's default: its DEFAULT expression, or the next value
-- of its identity sequence; NULL when it has neither.
CREATE OR REPLACE FUNCTION simtrail.column_default_sql(p_relid regclass, p_column text)
RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN a.attidentity <> '' THEN
                    pg_catalog.format('pg_catalog.nextval(%L::pg_catalog.regclass)',
                                      pg_catalog.pg_get_serial_sequence(p_relid::text, a.attname))
                ELSE pg_catalog.pg_get_expr(d.adbin, d.adrelid) END
    FROM pg_catalog.pg_attribute AS a
    LEFT JOIN pg_catalog.pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE a.attrelid = p_relid AND a.attname = p_column AND NOT a.attisdropped
$$;

-- The text form of a set of values, as copy_map keeps them: one value as
-- its text, several as a jsonb array of their texts. p_values are SQL
-- expressions.
CREATE OR REPLACE FUNCTION simtrail.key_text_sql(p_values text[])
RETURNS text
LANGUAGE sql IMMUTABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN pg_catalog.cardinality(p_values) = 1 THEN pg_catalog.format('(%s)::text', p_values[1])
                ELSE pg_catalog.format('pg_catalog.jsonb_build_array(%s)::text',
                         (SELECT pg_catalog.string_agg(pg_catalog.format('(%s)::text', v), ', ' ORDER BY o)
                          FROM pg_catalog.unnest(p_values) WITH ORDINALITY AS u(v, o))) END
$$;

-- How a copy writes each column of captured table p_table into tenant p_to.
-- Returns {"pk": [...], "columns": [{"name", "type", "how", "expr", "ref",
-- "pos"}...], "refs": [{"alias", "ref_table", "cols", "child", "kind",
-- "name", "as_text"}...]}. `how` is
--   tenant  the table's own tenant column: set to the target;
--   ref     part of a reference to a captured table: remapped when the row
--           it points at is copied, kept otherwise;
--   gen     a value made per row: a primary-key column's default, an
--           `sql:` or `default` rule, or the default of a unique column
--           without a rule;
--   null    a `null` rule;
--   keep    the source's value.
-- Raises, naming the column, when a unique key would be copied unchanged
-- and no rule or default can make it differ.
-- p_graph: simtrail.references() as a jsonb array, read once per copy.
CREATE OR REPLACE FUNCTION simtrail.copy_table_plan(p_table text, p_graph jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t record;
    v_tenant_col text;
    v_refs jsonb := '[]';
    v_cols jsonb := '[]';
    r record;
    c record;
    v_how text;
    v_expr text;
    v_ref jsonb;
    v_pos integer;
    i record;
    v_kept text[];
    v_fix text;
    n integer := 0;
BEGIN
    SELECT ct.relid, ct.pk_columns, ct.tenant_path INTO t
    FROM simtrail.captured_tables AS ct WHERE ct.table_name = p_table;
    IF pg_catalog.jsonb_array_length(t.tenant_path -> 'hops') = 0 THEN
        v_tenant_col := t.tenant_path ->> 'tenant_column';
    END IF;
    -- Foreign keys first, so a column in both kinds follows its constraint.
    FOR r IN SELECT g.* FROM pg_catalog.jsonb_to_recordset(p_graph) AS g (
                 table_name text, columns text[], ref_table text, ref_columns text[], kind text,
                 name text, as_text boolean)
             WHERE g.table_name = p_table
             ORDER BY g.kind DESC, g.name LOOP
        n := n + 1;
        v_refs := v_refs || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
            'alias', 'r' || n, 'ref_table', r.ref_table,
            'cols', pg_catalog.array_to_string(r.ref_columns, ','),
            'ref_columns', pg_catalog.to_jsonb(r.ref_columns),
            'child', pg_catalog.to_jsonb(r.columns), 'kind', r.kind, 'name', r.name,
            'as_text', r.as_text));
    END LOOP;

    FOR c IN
        SELECT a.attname::text AS name, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type,
               a.attnotnull, a.attname::text = ANY (t.pk_columns) AS in_pk,
               q.rule, q.expression, simtrail.column_default_sql(t.relid, a.attname) AS dflt
        FROM pg_catalog.pg_attribute AS a
        LEFT JOIN simtrail.copy_rules AS q ON q.table_name = p_table AND q.column_name = a.attname
        WHERE a.attrelid = t.relid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
        ORDER BY a.attnum
    LOOP
        v_ref := NULL;
        v_pos := NULL;
        SELECT e.value, (SELECT o - 1 FROM pg_catalog.jsonb_array_elements_text(e.value -> 'child')
                                           WITH ORDINALITY AS x(col, o) WHERE x.col = c.name)
          INTO v_ref, v_pos
        FROM pg_catalog.jsonb_array_elements(v_refs) WITH ORDINALITY AS e(value, o)
        WHERE e.value -> 'child' ? c.name ORDER BY e.o LIMIT 1;
        v_expr := NULL;
        IF c.name = v_tenant_col THEN
            v_how := 'tenant';
        ELSIF v_ref IS NOT NULL THEN
            v_how := 'ref';
        ELSIF c.rule = 'sql' THEN
            v_how := 'gen';
            v_expr := c.expression;
        ELSIF c.rule = 'default' THEN
            v_how := 'gen';
            v_expr := coalesce(c.dflt, 'NULL');
        ELSIF c.rule = 'null' THEN
            v_how := 'null';
        ELSIF c.rule = 'keep' THEN
            v_how := 'keep';
        ELSIF c.in_pk AND c.dflt IS NOT NULL THEN
            v_how := 'gen';
            v_expr := c.dflt;
        ELSE
            v_how := 'keep';
        END IF;
        v_cols := v_cols || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
            'name', c.name, 'type', c.type, 'how', v_how, 'expr', v_expr, 'in_pk', c.in_pk,
            'rule', c.rule, 'default', c.dflt, 'ref', v_ref ->> 'alias', 'pos', v_pos,
            'multi', pg_catalog.jsonb_array_length(coalesce(v_ref -> 'child', '[]')) > 1));
    END LOOP;

    -- A unique key every column of which would be copied as it is would
    -- collide with the source row itself (same tenant) or with the
    -- source's copy elsewhere: give it a column's default, or refuse.
    FOR i IN
        SELECT x.indexrelid::regclass AS index_name, x.indisprimary,
               ARRAY(SELECT a.attname::text FROM pg_catalog.unnest(x.indkey::smallint[]) AS k(attnum)
                     JOIN pg_catalog.pg_attribute AS a ON a.attrelid = x.indrelid AND a.attnum = k.attnum)
                 AS cols
        FROM pg_catalog.pg_index AS x
        WHERE x.indrelid = t.relid AND x.indisunique AND 0 <> ALL (x.indkey::smallint[])
        ORDER BY x.indisprimary DESC, 1
    LOOP
        SELECT pg_catalog.array_agg(e ->> 'name' ORDER BY o) INTO v_kept
        FROM pg_catalog.jsonb_array_elements(v_cols) WITH ORDINALITY AS u(e, o)
        WHERE e ->> 'name' = ANY (i.cols);
        IF EXISTS (SELECT 1 FROM pg_catalog.jsonb_array_elements(v_cols) AS e
                   WHERE e ->> 'name' = ANY (i.cols)
                     AND (e ->> 'how' <> 'keep' OR e ->> 'rule' = 'keep')) THEN
            CONTINUE;
        END IF;
        -- The first column of the key with a default takes it.
        SELECT o INTO v_pos FROM pg_catalog.jsonb_array_elements(v_cols) WITH ORDINALITY AS u(e, o)
        WHERE e ->> 'name' = ANY (i.cols) AND e ->> 'default' IS NOT NULL ORDER BY o LIMIT 1;
        IF v_pos IS NOT NULL THEN
            v_cols := pg_catalog.jsonb_set(v_cols, ARRAY[(v_pos - 1)::text],
                (v_cols -> (v_pos - 1)) || pg_catalog.jsonb_build_object(
                    'how', 'gen', 'expr', v_cols -> (v_pos - 1) ->> 'default'));
            CONTINUE;
        END IF;
        v_fix := pg_catalog.format('simtrail config rule set %s.%s --on-copy ''sql:…''',
                                   p_table, v_kept[1]);
        RAISE EXCEPTION 'refused: %.% is unique (%) and has no copy rule and no default, so a copy would duplicate it; set a rule: %',
            p_table, pg_catalog.array_to_string(v_kept, ', '), i.index_name, v_fix
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END LOOP;

    RETURN pg_catalog.jsonb_build_object('table', p_table, 'relid', t.relid::oid,
                                         'pk', pg_catalog.to_jsonb(t.pk_columns),
                                         'columns', v_cols, 'refs', v_refs);
END
$$;

-- copy_table_plan, reading the graph itself.
CREATE OR REPLACE FUNCTION simtrail.copy_table_plan(p_table text)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT simtrail.copy_table_plan(p_table, (SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(g)), '[]')
                                            FROM simtrail.references() AS g))
$$;

-- The SQL expression of column p_col's new value in a phase-B row: source
-- row `s`, its key-map row `m`, the reference map rows r1, r2, ….
CREATE OR REPLACE FUNCTION simtrail.copy_value_sql(p_col jsonb, p_to text)
RETURNS text
LANGUAGE sql IMMUTABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE
        WHEN p_col ->> 'how' = 'tenant' THEN pg_catalog.format('%L::%s', p_to, p_col ->> 'type')
        WHEN (p_col ->> 'in_pk')::boolean THEN
            pg_catalog.format('(m.new_key ->> %L)::%s', p_col ->> 'name', p_col ->> 'type')
        WHEN p_col ->> 'how' = 'gen' THEN
            pg_catalog.format('(m.new_vals ->> %L)::%s', p_col ->> 'name', p_col ->> 'type')
        -- Typed: the row passes through a materialized CTE, where a bare
        -- NULL becomes text and no longer casts to the column on insert.
        WHEN p_col ->> 'how' = 'null' THEN pg_catalog.format('NULL::%s', p_col ->> 'type')
        WHEN p_col ->> 'how' = 'ref' THEN
            pg_catalog.format('CASE WHEN %1$I.old_value IS NULL THEN s.%2$I ELSE (%3$s)::%4$s END',
                p_col ->> 'ref', p_col ->> 'name',
                CASE WHEN p_col ->> 'multi' = 'true'
                     THEN pg_catalog.format('%I.new_value::jsonb ->> %s', p_col ->> 'ref', p_col ->> 'pos')
                     ELSE pg_catalog.format('%I.new_value', p_col ->> 'ref') END,
                p_col ->> 'type')
        ELSE pg_catalog.format('s.%I', p_col ->> 'name') END
$$;
