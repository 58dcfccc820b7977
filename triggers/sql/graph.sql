-- The reference graph among captured tables, and a tenant's rows of one
-- table now or at a target: what copies, purges, diffs and snapshot exports
-- are built from. Re-applied by every install (CREATE OR REPLACE).

-- Every reference among captured tables: each foreign key (from pg_constraint)
-- and each declared reference (simtrail.refs). `columns` of `table_name`
-- hold the values of `ref_columns` of `ref_table`; `as_text` when a declared
-- reference keeps the key as text in a column of another type. A declared
-- reference whose table or columns are gone is left out (doctor reports it).
-- kind: 'fk', 'declared', or 'path' (the config's tenant path, without FK).
CREATE OR REPLACE FUNCTION simtrail.references()
RETURNS TABLE (table_name text, columns text[], ref_table text, ref_columns text[],
               kind text, name text, as_text boolean, on_delete text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT tc.table_name,
           ARRAY(SELECT a.attname::text
                 FROM pg_catalog.unnest(k.conkey) WITH ORDINALITY AS x(n, o)
                 JOIN pg_catalog.pg_attribute AS a ON a.attrelid = k.conrelid AND a.attnum = x.n
                 ORDER BY x.o),
           tp.table_name,
           ARRAY(SELECT a.attname::text
                 FROM pg_catalog.unnest(k.confkey) WITH ORDINALITY AS x(n, o)
                 JOIN pg_catalog.pg_attribute AS a ON a.attrelid = k.confrelid AND a.attnum = x.n
                 ORDER BY x.o),
           'fk', k.conname::text, false, k.confdeltype::text
    FROM pg_catalog.pg_constraint AS k
    JOIN simtrail.captured_tables AS tc ON tc.relid = k.conrelid
    JOIN simtrail.captured_tables AS tp ON tp.relid = k.confrelid
    WHERE k.contype = 'f'
    UNION ALL
    SELECT r.table_name, ARRAY[r.column_name], r.ref_table, ARRAY[r.ref_column],
           'declared', r.table_name || '.' || r.column_name,
           ca.atttypid <> pa.atttypid, NULL
    FROM simtrail.refs AS r
    JOIN simtrail.captured_tables AS tc ON tc.table_name = r.table_name
    JOIN simtrail.captured_tables AS tp ON tp.table_name = r.ref_table
    JOIN pg_catalog.pg_attribute AS ca
      ON ca.attrelid = tc.relid AND ca.attname = r.column_name AND NOT ca.attisdropped
    JOIN pg_catalog.pg_attribute AS pa
      ON pa.attrelid = tp.relid AND pa.attname = r.ref_column AND NOT pa.attisdropped
    UNION ALL
    -- The config's own path to the tenant (parent_table, parent_column) is
    -- a reference too, foreign key or not: a copied child must follow its
    -- copied parent, or it would stay in the source's class.
    SELECT t.table_name, ARRAY[h.hop ->> 'column'], tp.table_name, ARRAY[h.hop ->> 'parent_column'],
           'path', t.table_name || '.' || (h.hop ->> 'column'),
           ca.atttypid <> pa.atttypid, NULL
    FROM simtrail.captured_tables AS t
    CROSS JOIN LATERAL (SELECT t.tenant_path -> 'hops' -> 0 AS hop) AS h
    JOIN simtrail.captured_tables AS tp ON tp.relid = (h.hop ->> 'parent')::regclass::oid
    JOIN pg_catalog.pg_attribute AS ca
      ON ca.attrelid = t.relid AND ca.attname = h.hop ->> 'column' AND NOT ca.attisdropped
    JOIN pg_catalog.pg_attribute AS pa
      ON pa.attrelid = tp.relid AND pa.attname = h.hop ->> 'parent_column' AND NOT pa.attisdropped
    WHERE h.hop IS NOT NULL
      AND NOT EXISTS (
          SELECT 1 FROM pg_catalog.pg_constraint AS k
          WHERE k.contype = 'f' AND k.conrelid = t.relid AND k.confrelid = tp.relid
            AND k.conkey = ARRAY[ca.attnum] AND k.confkey = ARRAY[pa.attnum])
      AND NOT EXISTS (
          SELECT 1 FROM simtrail.refs AS r
          WHERE r.table_name = t.table_name AND r.column_name = h.hop ->> 'column')
$$;

-- A relation (SQL text, to put in a FROM clause) holding tenant p_tenant's
-- rows of captured table p_table with the table's own row type: as they are
-- now, or with p_at as they were at the target that simtrail.rewind_stage
-- staged in simtrail.rewind_net for this transaction. Rows the log saw
-- change since come from their image at the target; the rest are live rows
-- the log never saw change, so they are as they were then. A row that was
-- of no tenant at the target (it entered since) is not in it. NOT IN, not
-- NOT EXISTS: the work table looks empty to the planner, which then hashes
-- it once instead of rescanning it per live row.
CREATE OR REPLACE FUNCTION simtrail.tenant_rows_sql(p_table text, p_tenant text, p_at boolean)
RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t record;
    v_lookup jsonb;
    v_pk text;
    v_match text;
    v_call xid8 := pg_catalog.pg_current_xact_id();
BEGIN
    SELECT c.relid, c.pk_columns, c.tenant_path INTO t
    FROM simtrail.captured_tables AS c WHERE c.table_name = p_table;
    IF NOT FOUND THEN
        RAISE EXCEPTION '% is not a captured table', p_table USING ERRCODE = 'undefined_table';
    END IF;
    v_lookup := simtrail.render_tenant_lookup(t.tenant_path, 's');
    -- The tenant column against a literal of its own type: an index on it
    -- serves, and the planner's estimate is the column's, not a guess.
    v_match := pg_catalog.format('%s = %L::%s', v_lookup ->> 'tenant_column', p_tenant,
                                 t.tenant_path ->> 'tenant_type');
    IF NOT p_at THEN
        RETURN pg_catalog.format('(SELECT s.* FROM %s AS s%s WHERE %s)',
                                 t.relid::regclass, v_lookup ->> 'joins', v_match);
    END IF;
    SELECT pg_catalog.string_agg(pg_catalog.format('%L, s.%I', c, c), ', ' ORDER BY o)
      INTO v_pk FROM pg_catalog.unnest(t.pk_columns) WITH ORDINALITY AS u(c, o);
    RETURN pg_catalog.format(
        '(SELECT s.* FROM %1$s AS s%2$s WHERE %3$s'
        ' AND pg_catalog.jsonb_build_object(%7$s) NOT IN (SELECT n.key FROM simtrail.rewind_net AS n'
        '   WHERE n.call_id = %5$L::pg_catalog.xid8 AND n.table_name = %6$L)'
        ' UNION ALL'
        ' SELECT j.* FROM simtrail.rewind_net AS n'
        ' CROSS JOIN LATERAL pg_catalog.jsonb_populate_record(NULL::%1$s, n.target_img) AS j'
        ' WHERE n.call_id = %5$L::pg_catalog.xid8 AND n.table_name = %6$L'
        '   AND n.target_img IS NOT NULL AND NOT coalesce(n.moves ? ''entered'', false))',
        t.relid::regclass, v_lookup ->> 'joins', v_match, NULL, v_call,
        p_table, v_pk);
END
$$;

-- Stage tenant p_tenant's state at p_target (see rewind_stage) for
-- tenant_rows_sql(…, true), without locking its rows; returns the resolved
-- target. The caller holds the tenant's lock, or reads in one snapshot
-- (REPEATABLE READ), so that the live rows and the log agree.
CREATE OR REPLACE FUNCTION simtrail.stage_state_at(p_tenant text, p_target text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN simtrail.rewind_stage(p_tenant, p_target, false, false, false);
END
$$;

-- Done with a staged state: drop this transaction's work rows.
CREATE OR REPLACE FUNCTION simtrail.unstage_state()
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    DELETE FROM simtrail.rewind_net AS n WHERE n.call_id = pg_catalog.pg_current_xact_id()
$$;

-- Captured tables ordered parents first along foreign keys and declared
-- references (self-references and cycles do not order; depth is the
-- longest path from a table that references none of the others).
CREATE OR REPLACE FUNCTION simtrail.reference_depths()
RETURNS TABLE (table_name text, depth integer)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH RECURSIVE edges AS (
        SELECT DISTINCT r.table_name AS child, r.ref_table AS parent
        FROM simtrail.references() AS r WHERE r.table_name <> r.ref_table
    ), walk (tbl, depth, path) AS (
        SELECT t.table_name, 0, ARRAY[t.table_name] FROM simtrail.captured_tables AS t
        UNION ALL
        SELECT e.child, w.depth + 1, w.path || e.child
        FROM walk AS w JOIN edges AS e ON e.parent = w.tbl
        WHERE e.child <> ALL (w.path) AND w.depth < 50
    )
    SELECT w.tbl, pg_catalog.max(w.depth)::integer FROM walk AS w GROUP BY w.tbl
$$;

-- The captured table a name means (bare names are in public), as
-- captured_tables spells it; raises when it is not captured.
CREATE OR REPLACE FUNCTION simtrail.captured_table(p_name text)
RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_parts text[];
    v_name text;
BEGIN
    BEGIN
        v_parts := pg_catalog.parse_ident(p_name);
    EXCEPTION WHEN invalid_parameter_value OR syntax_error THEN
        v_parts := NULL;
    END;
    IF v_parts IS NULL OR pg_catalog.cardinality(v_parts) NOT IN (1, 2) THEN
        RAISE EXCEPTION '% is not a table name', pg_catalog.quote_literal(coalesce(p_name, ''))
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF pg_catalog.cardinality(v_parts) = 1 THEN
        v_parts := ARRAY['public', v_parts[1]];
    END IF;
    SELECT c.table_name INTO v_name FROM simtrail.captured_tables AS c
    WHERE c.relid = pg_catalog.to_regclass(pg_catalog.format('%I.%I', v_parts[1], v_parts[2]));
    IF v_name IS NULL THEN
        RAISE EXCEPTION 'table % is not captured (not in the config, or disabled)',
            pg_catalog.format('%I.%I', v_parts[1], v_parts[2]) USING ERRCODE = 'undefined_table';
    END IF;
    RETURN v_name;
END
$$;

-- The config's category of a captured table.
CREATE OR REPLACE FUNCTION simtrail.table_category(p_table text)
RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT c.category FROM simtrail.captured_tables AS t
    JOIN simtrail.config_rows() AS r ON r.relid::oid = t.relid
    JOIN public.simulation_table_config AS c ON c.id = r.config_id
    WHERE t.table_name = p_table
    LIMIT 1
$$;
