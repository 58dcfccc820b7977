-- Declared references (columns holding another captured row's key with no
-- foreign key) and column rules for copies: the operator's configuration
-- that clone, copy and import read. Re-applied by every install
-- (CREATE OR REPLACE). Only simtrail's owner may call these functions or
-- write the tables behind them (EXECUTE and table rights are revoked from
-- PUBLIC), so no application role can redirect a copy.

-- The captured_tables row of p_table, by simtrail.captured_table's reading
-- of the name; its refusal is bad input here (a config edit).
CREATE OR REPLACE FUNCTION simtrail.find_captured(p_table text)
RETURNS simtrail.captured_tables
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t simtrail.captured_tables;
BEGIN
    SELECT c.* INTO t FROM simtrail.captured_tables AS c
    WHERE c.table_name = simtrail.captured_table(p_table);
    RETURN t;
EXCEPTION WHEN undefined_table THEN
    RAISE EXCEPTION '%', SQLERRM USING ERRCODE = 'invalid_parameter_value';
END
$$;

-- The ways p_table may be stored in simtrail.refs or simtrail.copy_rules,
-- for removing an entry whose table has since been dropped or renamed.
CREATE OR REPLACE FUNCTION simtrail.table_spellings(p_table text)
RETURNS text[]
LANGUAGE plpgsql IMMUTABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_parts text[];
BEGIN
    BEGIN
        v_parts := pg_catalog.parse_ident(p_table);
    EXCEPTION WHEN invalid_parameter_value OR syntax_error THEN
        RETURN ARRAY[p_table];
    END;
    IF pg_catalog.cardinality(v_parts) = 1 THEN
        RETURN ARRAY[p_table, pg_catalog.format('public.%I', v_parts[1])];
    ELSIF pg_catalog.cardinality(v_parts) = 2 THEN
        RETURN ARRAY[p_table, pg_catalog.format('%I.%I', v_parts[1], v_parts[2])];
    END IF;
    RETURN ARRAY[p_table];
END
$$;

-- The tenant column a copy sets on rows of table t, or NULL when the table
-- reaches its tenant through a parent.
CREATE OR REPLACE FUNCTION simtrail.own_tenant_column(p_path jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN pg_catalog.jsonb_array_length(coalesce(p_path -> 'hops', '[]')) = 0
                THEN p_path ->> 'tenant_column' END
$$;

-- Every column of a captured table that a reference may point at, with its
-- best kind: the single-column primary key, a column with a unique index
-- of its own, or one unique together with its table's own tenant column
-- ("unique per tenant", like an MRN). Partial and expression indexes do
-- not make a key.
CREATE OR REPLACE FUNCTION simtrail.reference_keys()
RETURNS TABLE (table_name text, relid oid, column_name text, type_id oid, kind text,
               tenant_column text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH idx AS (
        SELECT c.table_name, c.relid, i.indisprimary,
               simtrail.own_tenant_column(c.tenant_path) AS tenant_column,
               ARRAY(SELECT a.attname::text
                     FROM pg_catalog.unnest(i.indkey::smallint[]) WITH ORDINALITY AS x(n, o)
                     JOIN pg_catalog.pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = x.n
                     WHERE x.o <= i.indnkeyatts
                     ORDER BY x.o) AS cols
        FROM simtrail.captured_tables AS c
        JOIN pg_catalog.pg_index AS i ON i.indrelid = c.relid
        WHERE i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
    ), keys AS (
        SELECT x.table_name, x.relid, x.cols[1] AS column_name,
               CASE WHEN x.indisprimary THEN 'primary key' ELSE 'unique' END AS kind,
               NULL::text AS tenant_column, CASE WHEN x.indisprimary THEN 1 ELSE 2 END AS rank
        FROM idx AS x WHERE pg_catalog.cardinality(x.cols) = 1
        UNION ALL
        SELECT x.table_name, x.relid, c.col, 'unique per tenant', x.tenant_column, 3
        FROM idx AS x
        CROSS JOIN LATERAL pg_catalog.unnest(x.cols) AS c(col)
        WHERE pg_catalog.cardinality(x.cols) = 2 AND x.tenant_column = ANY (x.cols)
          AND c.col <> x.tenant_column
    )
    SELECT DISTINCT ON (k.table_name, k.column_name)
           k.table_name, k.relid, k.column_name, a.atttypid, k.kind, k.tenant_column
    FROM keys AS k
    JOIN pg_catalog.pg_attribute AS a ON a.attrelid = k.relid AND a.attname = k.column_name
    ORDER BY k.table_name, k.column_name, k.rank
$$;

-- Whether a column of type p_col can hold keys of type p_key: the same
-- type, or text holding a uuid, integer or bigint (or text) key as text.
CREATE OR REPLACE FUNCTION simtrail.key_type_fits(p_col oid, p_key oid)
RETURNS boolean
LANGUAGE sql IMMUTABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT p_col = p_key
        OR (p_col IN ('pg_catalog.text'::pg_catalog.regtype, 'pg_catalog.varchar'::pg_catalog.regtype)
            AND p_key IN ('pg_catalog.uuid'::pg_catalog.regtype, 'pg_catalog.int4'::pg_catalog.regtype,
                          'pg_catalog.int8'::pg_catalog.regtype, 'pg_catalog.text'::pg_catalog.regtype,
                          'pg_catalog.varchar'::pg_catalog.regtype))
$$;

-- A relation (SQL text) of the non-null values of p_column of captured
-- table p_table as text (v), each with the tenant of its row (tn).
CREATE OR REPLACE FUNCTION simtrail.render_ref_values(p_table text, p_column text)
RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.format('(SELECT (t.%1$I)::text AS v, %2$s AS tn FROM %3$s AS t%4$s'
                             ' WHERE t.%1$I IS NOT NULL)',
                             p_column, l ->> 'tenant', c.relid::regclass, l ->> 'joins')
    FROM simtrail.captured_tables AS c
    CROSS JOIN LATERAL simtrail.render_tenant_lookup(c.tenant_path, 't') AS l
    WHERE c.table_name = p_table
$$;

-- A condition true when the value x.v (with tenant x.tn) is a key of the
-- given column; per tenant, the referenced row must be of the same tenant.
CREATE OR REPLACE FUNCTION simtrail.render_key_found(p_table text, p_column text, p_tenant_column text)
RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.format('EXISTS (SELECT 1 FROM %s AS k WHERE (k.%I)::text = x.v%s)',
                             c.relid::regclass, p_column,
                             CASE WHEN p_tenant_column IS NOT NULL
                                  THEN pg_catalog.format(' AND (k.%I)::text = x.tn', p_tenant_column)
                                  ELSE '' END)
    FROM simtrail.captured_tables AS c WHERE c.table_name = p_table
$$;

-- A word for a POSIX shell: as it is when it is plain, else single-quoted.
CREATE OR REPLACE FUNCTION simtrail.shell_word(p_word text)
RETURNS text
LANGUAGE sql IMMUTABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN p_word ~ '^[A-Za-z0-9_./:=@%+-]+$' THEN p_word
                ELSE '''' || pg_catalog.replace(p_word, '''', '''"''"''') || '''' END
$$;

-- `simtrail config ref add TABLE.COLUMN --references REF_TABLE[.REF_COLUMN]`:
-- declare that p_column of p_table holds keys of p_ref_table (its primary
-- key unless p_ref_column names another key). Replaces an existing
-- declaration of the column. Returns what was stored and how many non-null
-- values of the column find their referenced row (per tenant for a key
-- unique per tenant) and how many do not.
CREATE OR REPLACE FUNCTION simtrail.add_reference(p_table text, p_column text, p_ref_table text,
                                                  p_ref_column text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t simtrail.captured_tables := simtrail.find_captured(p_table);
    p simtrail.captured_tables := simtrail.find_captured(p_ref_table);
    a record;
    pa record;
    k record;
    v_ref_column text := p_ref_column;
    v_fk record;
    v_rule record;
    v_old jsonb;
    v_matched bigint;
    v_total bigint;
    v_col text := pg_catalog.format('%s.%I', t.table_name, p_column);
BEGIN
    SELECT x.* INTO a FROM pg_catalog.pg_attribute AS x
    WHERE x.attrelid = t.relid AND x.attname = p_column AND x.attnum > 0 AND NOT x.attisdropped;
    IF NOT FOUND THEN
        RAISE EXCEPTION '% has no column %', t.table_name, pg_catalog.quote_ident(p_column)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF a.attgenerated <> '' THEN
        RAISE EXCEPTION '% is a generated column; a copy cannot remap it', v_col
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_column = simtrail.own_tenant_column(t.tenant_path) THEN
        RAISE EXCEPTION '% is the tenant column; a copy sets it to the target tenant', v_col
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT f.conname::text AS name, f.confrelid::regclass::text AS target INTO v_fk
    FROM pg_catalog.pg_constraint AS f
    WHERE f.contype = 'f' AND f.conrelid = t.relid AND a.attnum = ANY (f.conkey)
      AND (f.confrelid = p.relid OR f.conkey = ARRAY[a.attnum])
    ORDER BY f.conname LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION '% is already covered by foreign key % to %; nothing to declare', v_col,
            pg_catalog.quote_ident(v_fk.name), v_fk.target USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT r.rule, r.expression INTO v_rule FROM simtrail.copy_rules AS r
    WHERE r.table_name = t.table_name AND r.column_name = p_column;
    IF FOUND THEN
        RAISE EXCEPTION '% has a copy rule (%), but a copy remaps a reference; remove the rule first (simtrail config rule remove %)',
            v_col, CASE WHEN v_rule.rule = 'sql' THEN 'sql:' || v_rule.expression ELSE v_rule.rule END,
            simtrail.shell_word(v_col) USING ERRCODE = 'invalid_parameter_value';
    END IF;

    IF v_ref_column IS NULL THEN
        IF pg_catalog.cardinality(p.pk_columns) <> 1 THEN
            RAISE EXCEPTION '% has a composite primary key (%); name the referenced column: --references %.COLUMN',
                p.table_name, pg_catalog.array_to_string(p.pk_columns, ', '), p.table_name
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        v_ref_column := p.pk_columns[1];
    END IF;
    SELECT x.* INTO pa FROM pg_catalog.pg_attribute AS x
    WHERE x.attrelid = p.relid AND x.attname = v_ref_column AND x.attnum > 0 AND NOT x.attisdropped;
    IF NOT FOUND THEN
        RAISE EXCEPTION '% has no column %', p.table_name, pg_catalog.quote_ident(v_ref_column)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p.relid = t.relid AND v_ref_column = p_column THEN
        RAISE EXCEPTION '% cannot reference itself', v_col USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT x.* INTO k FROM simtrail.reference_keys() AS x
    WHERE x.relid = p.relid AND x.column_name = v_ref_column;
    IF NOT FOUND THEN
        RAISE EXCEPTION '%.% is not a key: a reference points at the primary key, a column with a unique index of its own%',
            p.table_name, pg_catalog.quote_ident(v_ref_column),
            CASE WHEN simtrail.own_tenant_column(p.tenant_path) IS NOT NULL
                 THEN pg_catalog.format(', or one unique together with %I',
                                        simtrail.own_tenant_column(p.tenant_path)) ELSE '' END
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT simtrail.key_type_fits(a.atttypid, pa.atttypid) THEN
        RAISE EXCEPTION '% is % but %.% is %: a reference has the key''s type, or is text holding a uuid, integer or bigint key',
            v_col, pg_catalog.format_type(a.atttypid, a.atttypmod), p.table_name,
            pg_catalog.quote_ident(v_ref_column), pg_catalog.format_type(pa.atttypid, pa.atttypmod)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    SELECT pg_catalog.jsonb_build_object('ref_table', r.ref_table, 'ref_column', r.ref_column)
      INTO v_old
    FROM simtrail.refs AS r WHERE r.table_name = t.table_name AND r.column_name = p_column;
    INSERT INTO simtrail.refs AS r (table_name, column_name, ref_table, ref_column)
    VALUES (t.table_name, p_column, p.table_name, v_ref_column)
    ON CONFLICT (table_name, column_name) DO UPDATE
        SET ref_table = EXCLUDED.ref_table, ref_column = EXCLUDED.ref_column,
            added_at = pg_catalog.now(), added_by = session_user;

    -- EXISTS in WHERE plans as a (hash) semi-join: linear, text compared or not.
    EXECUTE pg_catalog.format('WITH x AS MATERIALIZED %s SELECT (SELECT pg_catalog.count(*) FROM x'
                              ' WHERE %s), (SELECT pg_catalog.count(*) FROM x)',
                              simtrail.render_ref_values(t.table_name, p_column),
                              simtrail.render_key_found(p.table_name, v_ref_column, k.tenant_column))
       INTO v_matched, v_total;
    RETURN pg_catalog.jsonb_build_object(
        'table_name', t.table_name, 'column_name', p_column,
        'ref_table', p.table_name, 'ref_column', v_ref_column,
        'key', k.kind, 'as_text', a.atttypid <> pa.atttypid,
        'matched', v_matched, 'dangling', v_total - v_matched, 'replaced', v_old);
END
$$;

-- Delete the entry of one column from p_store (simtrail.refs or
-- simtrail.copy_rules) by the names as stored, so the entry of a dropped
-- table or column can be removed too. Returns the row deleted, or NULL.
CREATE OR REPLACE FUNCTION simtrail.delete_column_entry(p_store regclass, p_table text, p_column text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_old jsonb;
BEGIN
    EXECUTE pg_catalog.format('DELETE FROM %s AS r WHERE r.table_name = ANY ($1) AND r.column_name = $2'
                              ' RETURNING pg_catalog.to_jsonb(r)', p_store)
       INTO v_old USING simtrail.table_spellings(p_table), p_column;
    RETURN v_old;
END
$$;

-- `simtrail config ref remove TABLE.COLUMN`.
CREATE OR REPLACE FUNCTION simtrail.remove_reference(p_table text, p_column text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_old jsonb := simtrail.delete_column_entry('simtrail.refs', p_table, p_column);
BEGIN
    IF v_old IS NULL THEN
        RAISE EXCEPTION '%.% has no declared reference', p_table, pg_catalog.quote_ident(p_column)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN v_old - 'added_at' - 'added_by';
END
$$;

-- Why a declared reference no longer holds, per row of simtrail.refs
-- (problem NULL when it does).
CREATE OR REPLACE FUNCTION simtrail.declared_reference_problems()
RETURNS TABLE (table_name text, column_name text, ref_table text, ref_column text, problem text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT r.table_name, r.column_name, r.ref_table, r.ref_column,
           CASE WHEN t.relid IS NULL THEN pg_catalog.format('table %s is not captured', r.table_name)
                WHEN a.attname IS NULL
                    THEN pg_catalog.format('column %I is gone', r.column_name)
                WHEN p.relid IS NULL THEN pg_catalog.format('table %s is not captured', r.ref_table)
                WHEN pa.attname IS NULL
                    THEN pg_catalog.format('referenced column %I is gone', r.ref_column)
                WHEN k.column_name IS NULL
                    THEN pg_catalog.format('%s.%I is no longer a key', r.ref_table, r.ref_column)
                WHEN NOT simtrail.key_type_fits(a.atttypid, pa.atttypid)
                    THEN pg_catalog.format('%I is %s and %s.%I is %s', r.column_name,
                                           pg_catalog.format_type(a.atttypid, a.atttypmod), r.ref_table,
                                           r.ref_column, pg_catalog.format_type(pa.atttypid, pa.atttypmod))
           END
    FROM simtrail.refs AS r
    LEFT JOIN simtrail.captured_tables AS t ON t.table_name = r.table_name
    LEFT JOIN simtrail.captured_tables AS p ON p.table_name = r.ref_table
    LEFT JOIN pg_catalog.pg_attribute AS a
      ON a.attrelid = t.relid AND a.attname = r.column_name AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_catalog.pg_attribute AS pa
      ON pa.attrelid = p.relid AND pa.attname = r.ref_column AND pa.attnum > 0 AND NOT pa.attisdropped
    LEFT JOIN simtrail.reference_keys() AS k
      ON k.relid = p.relid AND k.column_name = r.ref_column
$$;

-- Columns of captured tables that look like undeclared references: named
-- *_id or *_ref, neither a foreign key nor declared nor the tenant column,
-- and every one of their (at least one) non-null values is, as text, a key
-- of exactly one captured table (per tenant for keys unique per tenant).
-- Two queries per such column: the values' shape, then an anti-join per
-- key of a fitting type and shape.
CREATE OR REPLACE FUNCTION simtrail.reference_candidates()
RETURNS TABLE (table_name text, column_name text, ref_table text, ref_column text, key text,
               as_text boolean, distinct_values bigint, command text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    c record;
    v_keys jsonb;
    v_found boolean[];
    v_hit jsonb;
    v_uuids boolean;
    v_integers boolean;
BEGIN
    FOR c IN
        SELECT t.table_name AS tbl, t.relid, a.attname::text AS col, a.atttypid
        FROM simtrail.captured_tables AS t
        JOIN pg_catalog.pg_attribute AS a
          ON a.attrelid = t.relid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
        WHERE a.attname ~* '_(id|ref)$'
          AND a.attname IS DISTINCT FROM t.tenant_path ->> 'tenant_column'
          AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint AS f
                          WHERE f.contype = 'f' AND f.conrelid = t.relid AND a.attnum = ANY (f.conkey))
          AND NOT EXISTS (SELECT 1 FROM simtrail.refs AS r
                          WHERE r.table_name = t.table_name AND r.column_name = a.attname)
        ORDER BY 1, 3
    LOOP
        -- The values' shape rules out most keys at once (an MRN is no uuid),
        -- so the anti-joins below run only against keys it could be.
        EXECUTE pg_catalog.format(
            'SELECT pg_catalog.count(DISTINCT x.v), pg_catalog.bool_and(x.v ~ %L),'
            ' pg_catalog.bool_and(x.v ~ ''^-?[0-9]+$'') FROM %s AS x',
            '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$',
            simtrail.render_ref_values(c.tbl, c.col))
           INTO distinct_values, v_uuids, v_integers;
        CONTINUE WHEN distinct_values = 0;
        SELECT pg_catalog.jsonb_agg(pg_catalog.to_jsonb(k) ORDER BY k.table_name, k.column_name)
          INTO v_keys
        FROM simtrail.reference_keys() AS k
        WHERE simtrail.key_type_fits(c.atttypid, k.type_id)
          AND NOT (k.relid = c.relid AND k.column_name = c.col)
          AND (k.type_id <> 'pg_catalog.uuid'::pg_catalog.regtype OR v_uuids)
          AND (k.type_id NOT IN ('pg_catalog.int4'::pg_catalog.regtype,
                                 'pg_catalog.int8'::pg_catalog.regtype) OR v_integers);
        CONTINUE WHEN v_keys IS NULL;
        EXECUTE pg_catalog.format(
            'WITH x AS MATERIALIZED (SELECT DISTINCT x.v, x.tn FROM %s AS x) SELECT ARRAY[%s]',
            simtrail.render_ref_values(c.tbl, c.col),
            (SELECT pg_catalog.string_agg(pg_catalog.format(
                        'NOT EXISTS (SELECT 1 FROM x WHERE NOT %s)',
                        simtrail.render_key_found(e ->> 'table_name', e ->> 'column_name',
                                                  e ->> 'tenant_column')), ', ' ORDER BY i)
             FROM pg_catalog.jsonb_array_elements(v_keys) WITH ORDINALITY AS u(e, i)))
          INTO v_found;
        CONTINUE WHEN v_found IS NULL;
        SELECT e INTO v_hit
        FROM pg_catalog.jsonb_array_elements(v_keys) WITH ORDINALITY AS u(e, i)
        WHERE v_found[i]
          AND (SELECT pg_catalog.count(DISTINCT e2 ->> 'table_name')
               FROM pg_catalog.jsonb_array_elements(v_keys) WITH ORDINALITY AS u2(e2, i2)
               WHERE v_found[i2]) = 1
        ORDER BY CASE e ->> 'kind' WHEN 'primary key' THEN 1 WHEN 'unique' THEN 2 ELSE 3 END,
                 e ->> 'column_name'
        LIMIT 1;
        CONTINUE WHEN v_hit IS NULL;
        table_name := c.tbl;
        column_name := c.col;
        ref_table := v_hit ->> 'table_name';
        ref_column := v_hit ->> 'column_name';
        key := v_hit ->> 'kind';
        as_text := c.atttypid <> (v_hit ->> 'type_id')::oid;
        command := pg_catalog.format('simtrail config ref add %s --references %s',
                                     simtrail.shell_word(pg_catalog.format('%s.%I', c.tbl, c.col)),
                                     simtrail.shell_word(pg_catalog.format('%s.%I', ref_table, ref_column)));
        RETURN NEXT;
    END LOOP;
END
$$;

-- What is wrong with a copy rule's expression for p_column of p_relid, or
-- NULL when it parses, type-checks against the column (with assignment
-- casts) and gives one value per source row. EXPLAIN plans the INSERT a
-- copy would run and executes nothing; opened as a cursor, a string that
-- smuggles in a second statement is refused instead of run.
CREATE OR REPLACE FUNCTION simtrail.copy_rule_problem(p_relid regclass, p_column text, p_expression text)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
    v_plan jsonb;
    v_collapses boolean;
BEGIN
    BEGIN
        FOR r IN EXECUTE pg_catalog.format(
            'EXPLAIN (COSTS OFF, FORMAT JSON) INSERT INTO %1$s (%2$I) OVERRIDING SYSTEM VALUE'
            ' SELECT (%3$s) FROM ONLY %1$s AS s', p_relid, p_column, p_expression)
        LOOP
            v_plan := r."QUERY PLAN"::text::jsonb;
        END LOOP;
    EXCEPTION WHEN OTHERS THEN
        RETURN pg_catalog.split_part(SQLERRM, E'\n', 1);
    END;
    -- Below the INSERT, only scans and projections; an aggregate, window or
    -- set-returning function at the top level would not give one value per
    -- row. Scalar subqueries (init plans and subplans) may hold anything.
    WITH RECURSIVE n (node) AS (
        SELECT v_plan -> 0 -> 'Plan'
        UNION ALL
        SELECT ch FROM n CROSS JOIN LATERAL pg_catalog.jsonb_array_elements(n.node -> 'Plans') AS ch
        WHERE coalesce(ch ->> 'Parent Relationship', '') NOT IN ('InitPlan', 'SubPlan')
    )
    SELECT pg_catalog.bool_or(n.node ->> 'Node Type' IN ('Aggregate', 'WindowAgg', 'ProjectSet', 'Group'))
      INTO v_collapses FROM n;
    IF v_collapses THEN
        RETURN 'the expression must give one value per copied row: no aggregate, window or'
               ' set-returning function outside a subquery';
    END IF;
    RETURN NULL;
END
$$;

-- `simtrail config rule set TABLE.COLUMN --on-copy RULE`: what a copy
-- writes into p_column instead of the source row's value. p_rule is
-- `keep`, `default`, `null` or `sql:EXPR`; an expression is evaluated per
-- copied row as `SELECT (EXPR) FROM <source rows> AS s`, so it may name the
-- source row's columns. Replaces an existing rule; refuses, storing
-- nothing, a rule a copy could not apply.
CREATE OR REPLACE FUNCTION simtrail.set_copy_rule(p_table text, p_column text, p_rule text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t simtrail.captured_tables := simtrail.find_captured(p_table);
    a record;
    g record;
    v_col text := pg_catalog.format('%s.%I', t.table_name, p_column);
    v_text text := pg_catalog.btrim(coalesce(p_rule, ''));
    v_rule text;
    v_expr text;
    v_problem text;
    v_old jsonb;
BEGIN
    SELECT x.*, coalesce(y.typdefaultbin IS NOT NULL, false) AS domain_default INTO a
    FROM pg_catalog.pg_attribute AS x
    LEFT JOIN pg_catalog.pg_type AS y ON y.oid = x.atttypid AND y.typtype = 'd'
    WHERE x.attrelid = t.relid AND x.attname = p_column AND x.attnum > 0 AND NOT x.attisdropped;
    IF NOT FOUND THEN
        RAISE EXCEPTION '% has no column %', t.table_name, pg_catalog.quote_ident(p_column)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF pg_catalog.lower(v_text) IN ('keep', 'default', 'null') THEN
        v_rule := pg_catalog.lower(v_text);
    ELSIF pg_catalog.lower(pg_catalog.left(v_text, 4)) = 'sql:' THEN
        v_rule := 'sql';
        v_expr := pg_catalog.btrim(pg_catalog.substr(v_text, 5));
        IF v_expr = '' THEN
            RAISE EXCEPTION 'rule for %: sql: needs an expression, e.g. sql:''P'' || s.id', v_col
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    ELSE
        RAISE EXCEPTION 'rule for %: unknown rule %; use keep, default, null or sql:EXPR', v_col,
            pg_catalog.quote_literal(v_text) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF a.attgenerated <> '' THEN
        RAISE EXCEPTION '% is a generated column; a copy computes it', v_col
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_column = simtrail.own_tenant_column(t.tenant_path) THEN
        RAISE EXCEPTION '% is the tenant column; a copy sets it to the target tenant', v_col
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT x.kind, x.name, x.ref_table INTO g FROM simtrail.references() AS x
    WHERE x.table_name = t.table_name AND p_column = ANY (x.columns)
    ORDER BY x.kind DESC, x.name LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION '% is a reference to % (%); a copy remaps it, so it takes no rule', v_col,
            g.ref_table, CASE WHEN g.kind = 'fk' THEN 'foreign key ' || pg_catalog.quote_ident(g.name)
                              WHEN g.kind = 'path' THEN 'the config''s path to the tenant'
                              ELSE 'declared' END
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_rule = 'keep' AND EXISTS (SELECT 1 FROM simtrail.reference_keys() AS k
                                   WHERE k.relid = t.relid AND k.column_name = p_column
                                     AND k.tenant_column IS NULL) THEN
        RAISE EXCEPTION 'rule for %: keep would collide, the column is unique and the source row keeps its value',
            v_col USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_rule = 'null' AND a.attnotnull THEN
        RAISE EXCEPTION 'rule for %: null, but the column is NOT NULL', v_col
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_rule = 'default' AND a.attnotnull AND NOT a.atthasdef AND a.attidentity = ''
       AND NOT a.domain_default THEN
        RAISE EXCEPTION 'rule for %: default, but the column is NOT NULL and has no default', v_col
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_rule = 'sql' THEN
        v_problem := simtrail.copy_rule_problem(t.relid::regclass, p_column, v_expr);
        IF v_problem IS NOT NULL THEN
            RAISE EXCEPTION 'rule for %: %', v_col, v_problem USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;

    SELECT pg_catalog.jsonb_build_object('rule', r.rule, 'expression', r.expression) INTO v_old
    FROM simtrail.copy_rules AS r WHERE r.table_name = t.table_name AND r.column_name = p_column;
    INSERT INTO simtrail.copy_rules AS r (table_name, column_name, rule, expression)
    VALUES (t.table_name, p_column, v_rule, v_expr)
    ON CONFLICT (table_name, column_name) DO UPDATE
        SET rule = EXCLUDED.rule, expression = EXCLUDED.expression,
            set_at = pg_catalog.now(), set_by = session_user;
    RETURN pg_catalog.jsonb_build_object('table_name', t.table_name, 'column_name', p_column,
                                         'rule', v_rule, 'expression', v_expr, 'replaced', v_old);
END
$$;

-- `simtrail config rule remove TABLE.COLUMN`: the column is copied like
-- any other again.
CREATE OR REPLACE FUNCTION simtrail.remove_copy_rule(p_table text, p_column text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_old jsonb := simtrail.delete_column_entry('simtrail.copy_rules', p_table, p_column);
BEGIN
    IF v_old IS NULL THEN
        RAISE EXCEPTION '%.% has no copy rule', p_table, pg_catalog.quote_ident(p_column)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN v_old - 'set_at' - 'set_by';
END
$$;

-- Why a copy rule no longer applies, per row of simtrail.copy_rules
-- (problem NULL when it does): its table or column is gone, the column
-- became a reference, or its expression no longer plans.
CREATE OR REPLACE FUNCTION simtrail.copy_rule_problems()
RETURNS TABLE (table_name text, column_name text, rule text, expression text, problem text)
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT r.table_name, r.column_name, r.rule, r.expression,
           CASE WHEN t.relid IS NULL THEN pg_catalog.format('table %s is not captured', r.table_name)
                WHEN a.attname IS NULL THEN pg_catalog.format('column %I is gone', r.column_name)
                WHEN EXISTS (SELECT 1 FROM simtrail.references() AS g
                             WHERE g.table_name = r.table_name AND r.column_name = ANY (g.columns))
                    THEN pg_catalog.format('column %I is now a reference, which a copy remaps',
                                           r.column_name)
                WHEN r.rule = 'sql'
                    THEN simtrail.copy_rule_problem(t.relid::regclass, r.column_name, r.expression)
           END
    FROM simtrail.copy_rules AS r
    LEFT JOIN simtrail.captured_tables AS t ON t.table_name = r.table_name
    LEFT JOIN pg_catalog.pg_attribute AS a
      ON a.attrelid = t.relid AND a.attname = r.column_name AND a.attnum > 0 AND NOT a.attisdropped
$$;

-- doctor's findings about references and rules: columns that look like
-- undeclared references, declared references and copy rules that no
-- longer hold. Each detail ends with the command that fixes it.
CREATE OR REPLACE FUNCTION simtrail.reference_findings()
RETURNS TABLE (severity text, kind text, table_name text, detail text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
BEGIN
    -- Until a restored database is rebased, captured_tables holds the old
    -- cluster's OIDs and every reference would look broken; doctor's rebase
    -- finding says to run `simtrail install`, which fixes them.
    IF coalesce(simtrail.cluster_changed(), false) THEN
        RETURN;
    END IF;
    FOR r IN SELECT * FROM simtrail.reference_candidates() LOOP
        severity := 'warning'; kind := 'undeclared_reference'; table_name := r.table_name;
        detail := pg_catalog.format(
            'column %I holds keys of %s.%I (%s, all %s distinct values found) but is neither a foreign'
            ' key nor a declared reference, so a copy would not remap it; declare it: `%s`',
            r.column_name, r.ref_table, r.ref_column, r.key, r.distinct_values, r.command);
        RETURN NEXT;
    END LOOP;
    FOR r IN SELECT * FROM simtrail.declared_reference_problems() AS p WHERE p.problem IS NOT NULL
             ORDER BY 1, 2 LOOP
        severity := 'warning'; kind := 'broken_reference'; table_name := r.table_name;
        detail := pg_catalog.format(
            'declared reference %I → %s.%I no longer holds (%s), so copies ignore it; remove it: `%s`',
            r.column_name, r.ref_table, r.ref_column, r.problem,
            'simtrail config ref remove '
                || simtrail.shell_word(pg_catalog.format('%s.%I', r.table_name, r.column_name)));
        RETURN NEXT;
    END LOOP;
    FOR r IN SELECT * FROM simtrail.copy_rule_problems() AS p WHERE p.problem IS NOT NULL
             ORDER BY 1, 2 LOOP
        severity := 'warning'; kind := 'broken_copy_rule'; table_name := r.table_name;
        detail := pg_catalog.format(
            'copy rule for %I (%s) no longer applies (%s); set it again or remove it: `%s`',
            r.column_name, CASE WHEN r.rule = 'sql' THEN 'sql:' || r.expression ELSE r.rule END,
            r.problem,
            'simtrail config rule remove '
                || simtrail.shell_word(pg_catalog.format('%s.%I', r.table_name, r.column_name)));
        RETURN NEXT;
    END LOOP;
END
$$;
