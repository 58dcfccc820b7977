-- The phases of a copy, one table at a time (see copy.sql for the plan a
-- phase reads and copy_run in clone.sql for their order). Each reads the
-- table's source rows from p_rel (SQL of a relation with the table's row
-- type) as `s`, and this transaction's rows of simtrail.copy_map.
-- Re-applied by every install (CREATE OR REPLACE).

-- This transaction's map rows of one column set of one table. A function
-- with a large row estimate, not a join on the work table: the planner
-- believes the work table empty and would rescan it per source row; told
-- it is big, it hashes it once (never inlined: it is SECURITY DEFINER).
CREATE OR REPLACE FUNCTION simtrail.copy_map_of(p_table text, p_cols text)
RETURNS TABLE (old_value text, new_value text, new_key jsonb, new_vals jsonb)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp ROWS 10000 AS $$
    SELECT w.old_value, w.new_value, w.new_key, w.new_vals FROM simtrail.copy_map AS w
    WHERE w.call_id = pg_catalog.pg_current_xact_id() AND w.table_name = p_table AND w.cols = p_cols
$$;

-- The map row of a reference's value, as alias rN.
CREATE OR REPLACE FUNCTION simtrail.copy_ref_join(p_ref jsonb, p_source text, p_prefix text)
RETURNS text
LANGUAGE sql IMMUTABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.format(
        ' LEFT JOIN simtrail.copy_map_of(%2$L, %3$L) AS %1$I ON %1$I.old_value = %4$s',
        p_ref ->> 'alias', p_ref ->> 'ref_table', p_ref ->> 'cols',
        simtrail.key_text_sql(ARRAY(SELECT pg_catalog.format('%s.%I', p_source, p_prefix || c)
                                    FROM pg_catalog.jsonb_array_elements_text(p_ref -> 'child')
                                         WITH ORDINALITY AS u(c, o) ORDER BY o)))
$$;

-- The key-map row `m` of a source row `s`.
CREATE OR REPLACE FUNCTION simtrail.copy_key_join(p_plan jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.format(
        ' JOIN simtrail.copy_map_of(%L, %L) AS m ON m.old_value = %s',
        p_plan ->> 'table', (SELECT pg_catalog.string_agg(c, ',' ORDER BY o)
                             FROM pg_catalog.jsonb_array_elements_text(p_plan -> 'pk')
                                  WITH ORDINALITY AS u(c, o)),
        simtrail.key_text_sql(ARRAY(SELECT pg_catalog.format('s.%I', c)
                                    FROM pg_catalog.jsonb_array_elements_text(p_plan -> 'pk')
                                         WITH ORDINALITY AS u(c, o) ORDER BY o)))
$$;

-- Phase A: a new key and the generated values of every source row, kept
-- in copy_map under the row's old key. Parents are done first, so a key
-- made of references maps through its parents' new keys.
CREATE OR REPLACE FUNCTION simtrail.copy_phase_keys(p_plan jsonb, p_rel text, p_to text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_pk text[] := ARRAY(SELECT c FROM pg_catalog.jsonb_array_elements_text(p_plan -> 'pk')
                         WITH ORDINALITY AS u(c, o) ORDER BY o);
    v_gen text;
    v_kept text;
    v_joins text := '';
    v_new text[] := ARRAY[]::text[];
    v_obj text;
    v_ref jsonb;
    c jsonb;
    v_count bigint;
BEGIN
    -- Rule expressions name the source row's columns, so the row is alone
    -- in the FROM clause where they are evaluated.
    SELECT coalesce(pg_catalog.string_agg(pg_catalog.format('%L, (%s)', e ->> 'name', e ->> 'expr'),
                                          ', '), '')
      INTO v_gen
    FROM pg_catalog.jsonb_array_elements(p_plan -> 'columns') AS e WHERE e ->> 'how' = 'gen';
    -- Columns the key needs from the source row: its own and those of the
    -- references it is made of.
    SELECT pg_catalog.string_agg(DISTINCT pg_catalog.format('s.%I AS %I', x, 'k_' || x), ', ')
      INTO v_kept
    FROM (SELECT pg_catalog.unnest(v_pk) AS x
          UNION
          SELECT ch FROM pg_catalog.jsonb_array_elements(p_plan -> 'refs') AS r
          CROSS JOIN LATERAL pg_catalog.jsonb_array_elements_text(r -> 'child') AS ch
          WHERE r -> 'child' ?| v_pk) AS k;

    FOR c IN SELECT e FROM pg_catalog.jsonb_array_elements(p_plan -> 'columns') AS e
             WHERE (e ->> 'in_pk')::boolean
             ORDER BY pg_catalog.array_position(v_pk, e ->> 'name') LOOP
        IF c ->> 'how' = 'tenant' THEN
            v_new := v_new || pg_catalog.format('%L::%s', p_to, c ->> 'type');
        ELSIF c ->> 'how' = 'gen' THEN
            v_new := v_new || pg_catalog.format('(x.v ->> %L)::%s', c ->> 'name', c ->> 'type');
        ELSIF c ->> 'how' = 'ref' THEN
            SELECT r INTO v_ref FROM pg_catalog.jsonb_array_elements(p_plan -> 'refs') AS r
            WHERE r ->> 'alias' = c ->> 'ref';
            IF pg_catalog.strpos(v_joins, pg_catalog.format(' AS %I ON', v_ref ->> 'alias')) = 0 THEN
                v_joins := v_joins || simtrail.copy_ref_join(v_ref, 'x', 'k_');
            END IF;
            v_new := v_new || pg_catalog.format(
                'CASE WHEN %1$I.old_value IS NULL THEN x.%2$I ELSE (%3$s)::%4$s END',
                c ->> 'ref', 'k_' || (c ->> 'name'),
                CASE WHEN (c ->> 'multi')::boolean
                     THEN pg_catalog.format('%I.new_value::jsonb ->> %s', c ->> 'ref', c ->> 'pos')
                     ELSE pg_catalog.format('%I.new_value', c ->> 'ref') END,
                c ->> 'type');
        ELSE
            v_new := v_new || pg_catalog.format('x.%I', 'k_' || (c ->> 'name'));
        END IF;
    END LOOP;
    SELECT pg_catalog.string_agg(pg_catalog.format('%L, %s', v_pk[o], v), ', ' ORDER BY o)
      INTO v_obj FROM pg_catalog.unnest(v_new) WITH ORDINALITY AS u(v, o);

    EXECUTE pg_catalog.format(
        'INSERT INTO simtrail.copy_map (call_id, table_name, cols, old_value, new_value, new_vals,'
        ' old_key, new_key)'
        ' SELECT pg_catalog.pg_current_xact_id(), %1$L, %2$L, x.old_value, %3$s, x.v, x.old_key,'
        ' pg_catalog.jsonb_build_object(%4$s)'
        ' FROM (SELECT %5$s AS old_value, pg_catalog.jsonb_build_object(%6$s) AS old_key,'
        '              pg_catalog.jsonb_build_object(%7$s) AS v, %8$s'
        '       FROM %9$s AS s) AS x%10$s',
        p_plan ->> 'table', pg_catalog.array_to_string(v_pk, ','), simtrail.key_text_sql(v_new),
        v_obj,
        simtrail.key_text_sql(ARRAY(SELECT pg_catalog.format('s.%I', x) FROM pg_catalog.unnest(v_pk) AS x)),
        (SELECT pg_catalog.string_agg(pg_catalog.format('%L, s.%I', x, x), ', ')
         FROM pg_catalog.unnest(v_pk) AS x),
        v_gen, v_kept, p_rel, v_joins);
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;

-- Generated values that collide with a row already in the table, or with
-- another copied row, under a unique key made of generated columns (and
-- the tenant column) are generated again, a bounded number of times.
CREATE OR REPLACE FUNCTION simtrail.copy_phase_unique(p_plan jsonb, p_rel text, p_to text)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_relid regclass := (p_plan ->> 'relid')::oid::regclass;
    i record;
    v_match text;
    v_tuple text;
    v_regen text;
    v_colliding text[];
    v_round integer;
    v_retried integer := 0;
BEGIN
    FOR i IN
        SELECT x.indexrelid::regclass AS index_name,
               ARRAY(SELECT e FROM pg_catalog.unnest(x.indkey::smallint[]) AS k(attnum)
                     JOIN pg_catalog.pg_attribute AS a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
                     JOIN pg_catalog.jsonb_array_elements(p_plan -> 'columns') AS e
                       ON e ->> 'name' = a.attname::text) AS cols
        FROM pg_catalog.pg_index AS x
        WHERE x.indrelid = v_relid AND x.indisunique AND NOT x.indisprimary
          AND 0 <> ALL (x.indkey::smallint[])
    LOOP
        IF EXISTS (SELECT 1 FROM pg_catalog.unnest(i.cols) AS e
                   WHERE e ->> 'how' NOT IN ('gen', 'tenant') OR (e ->> 'in_pk')::boolean)
           OR NOT EXISTS (SELECT 1 FROM pg_catalog.unnest(i.cols) AS e WHERE e ->> 'how' = 'gen') THEN
            CONTINUE;
        END IF;
        SELECT pg_catalog.string_agg(pg_catalog.format('t.%I = %s', e ->> 'name',
                   CASE WHEN e ->> 'how' = 'tenant' THEN pg_catalog.format('%L::%s', p_to, e ->> 'type')
                        ELSE pg_catalog.format('(m.new_vals ->> %L)::%s', e ->> 'name', e ->> 'type') END),
                   ' AND '),
               pg_catalog.string_agg(pg_catalog.format('m2.new_vals -> %L', e ->> 'name'), ', ')
                   FILTER (WHERE e ->> 'how' = 'gen'),
               pg_catalog.string_agg(pg_catalog.format('%L, (%s)', e ->> 'name', e ->> 'expr'), ', ')
                   FILTER (WHERE e ->> 'how' = 'gen')
          INTO v_match, v_tuple, v_regen
        FROM pg_catalog.unnest(i.cols) AS e;
        FOR v_round IN 1 .. 11 LOOP
            EXECUTE pg_catalog.format(
                'SELECT pg_catalog.array_agg(m.old_value) FROM simtrail.copy_map AS m'
                ' WHERE m.call_id = pg_catalog.pg_current_xact_id() AND m.table_name = %1$L'
                '   AND m.new_key IS NOT NULL'
                '   AND (EXISTS (SELECT 1 FROM %2$s AS t WHERE %3$s)'
                '        OR pg_catalog.jsonb_build_array(%5$s) IN ('
                '            SELECT pg_catalog.jsonb_build_array(%4$s) FROM simtrail.copy_map AS m2'
                '            WHERE m2.call_id = pg_catalog.pg_current_xact_id() AND m2.table_name = %1$L'
                '              AND m2.new_key IS NOT NULL'
                '              AND NOT pg_catalog.jsonb_build_array(%4$s) @> ''[null]'''
                '            GROUP BY 1 HAVING pg_catalog.count(*) > 1))',
                p_plan ->> 'table', v_relid, v_match, v_tuple,
                pg_catalog.replace(v_tuple, 'm2.new_vals', 'm.new_vals'))
            INTO v_colliding;
            EXIT WHEN v_colliding IS NULL;
            IF v_round > 10 THEN
                RAISE EXCEPTION 'refused: the values generated for % (unique key %) still collided for % row(s) after 10 tries; widen the copy rule''s range',
                    p_plan ->> 'table', i.index_name, pg_catalog.cardinality(v_colliding)
                    USING ERRCODE = 'unique_violation';
            END IF;
            v_retried := v_retried + pg_catalog.cardinality(v_colliding);
            EXECUTE pg_catalog.format(
                'UPDATE simtrail.copy_map AS m SET new_vals = m.new_vals || g.v'
                ' FROM (SELECT %1$s AS k, pg_catalog.jsonb_build_object(%2$s) AS v FROM %3$s AS s) AS g'
                ' WHERE m.call_id = pg_catalog.pg_current_xact_id() AND m.table_name = %4$L'
                '   AND m.new_key IS NOT NULL AND m.old_value = g.k AND m.old_value = ANY ($1)',
                simtrail.key_text_sql(ARRAY(SELECT pg_catalog.format('s.%I', x)
                                            FROM pg_catalog.jsonb_array_elements_text(p_plan -> 'pk')
                                                 WITH ORDINALITY AS u(x, o) ORDER BY o)),
                v_regen, p_rel, p_plan ->> 'table')
            USING v_colliding;
        END LOOP;
    END LOOP;
    RETURN v_retried;
END
$$;

-- The old-to-new map of every other column set a reference points at (a
-- unique column such as a barcode or an MRN), from the key map.
CREATE OR REPLACE FUNCTION simtrail.copy_phase_maps(p_plan jsonb, p_rel text, p_to text, p_sets text[])
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_set text;
    v_cols text[];
    v_old text[];
    v_new text[];
    v_bad text;
BEGIN
    FOREACH v_set IN ARRAY coalesce(p_sets, ARRAY[]::text[]) LOOP
        v_cols := pg_catalog.string_to_array(v_set, ',');
        SELECT pg_catalog.array_agg(pg_catalog.format('s.%I', x) ORDER BY o),
               pg_catalog.array_agg(
                   CASE WHEN e ->> 'how' = 'ref' AND NOT (e ->> 'in_pk')::boolean
                        THEN pg_catalog.format('s.%I', x)
                        ELSE simtrail.copy_value_sql(e, p_to) END ORDER BY o)
          INTO v_old, v_new
        FROM pg_catalog.unnest(v_cols) WITH ORDINALITY AS u(x, o)
        JOIN pg_catalog.jsonb_array_elements(p_plan -> 'columns') AS e ON e ->> 'name' = x;
        EXECUTE pg_catalog.format(
            'INSERT INTO simtrail.copy_map (call_id, table_name, cols, old_value, new_value)'
            ' SELECT DISTINCT pg_catalog.pg_current_xact_id(), %1$L, %2$L, %3$s, %4$s'
            ' FROM %5$s AS s%6$s WHERE %7$s',
            p_plan ->> 'table', v_set, simtrail.key_text_sql(v_old), simtrail.key_text_sql(v_new),
            p_rel, simtrail.copy_key_join(p_plan),
            (SELECT pg_catalog.string_agg(pg_catalog.format('%s IS NOT NULL', o), ' AND ')
             FROM pg_catalog.unnest(v_old) AS o));
        SELECT m.old_value INTO v_bad FROM simtrail.copy_map AS m
        WHERE m.call_id = pg_catalog.pg_current_xact_id() AND m.table_name = p_plan ->> 'table'
          AND m.cols = v_set
        GROUP BY m.old_value HAVING pg_catalog.count(*) > 1 LIMIT 1;
        IF v_bad IS NOT NULL THEN
            RAISE EXCEPTION 'refused: references point at %.% by value, but value % belongs to more than one copied row, so which copy they mean is ambiguous',
                p_plan ->> 'table', v_set, v_bad USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
    END LOOP;
END
$$;

-- Refuse a copy whose rows would still point into the source tenant: a
-- reference to a row of that tenant that is not part of the copy.
CREATE OR REPLACE FUNCTION simtrail.copy_check_source(p_plan jsonb, p_rel text, p_source text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r jsonb;
    v_child text[];
    v_count bigint;
    v_example text;
BEGIN
    FOR r IN SELECT e FROM pg_catalog.jsonb_array_elements(p_plan -> 'refs') AS e LOOP
        v_child := ARRAY(SELECT pg_catalog.format('s.%I', c)
                         FROM pg_catalog.jsonb_array_elements_text(r -> 'child') WITH ORDINALITY AS u(c, o)
                         ORDER BY o);
        EXECUTE pg_catalog.format(
            'SELECT pg_catalog.count(*), pg_catalog.min(%1$s) FROM %2$s AS s%3$s'
            ' WHERE %4$I.old_value IS NULL AND %5$s'
            ' AND %1$s IN (SELECT %6$s FROM %7$s AS p)',
            simtrail.key_text_sql(v_child), p_rel, simtrail.copy_ref_join(r, 's', ''), r ->> 'alias',
            (SELECT pg_catalog.string_agg(pg_catalog.format('%s IS NOT NULL', c), ' AND ')
             FROM pg_catalog.unnest(v_child) AS c),
            simtrail.key_text_sql(ARRAY(SELECT pg_catalog.format('p.%I', c)
                                        FROM pg_catalog.jsonb_array_elements_text(r -> 'ref_columns')
                                             WITH ORDINALITY AS u(c, o) ORDER BY o)),
            simtrail.tenant_rows_sql(r ->> 'ref_table', p_source, false))
        INTO v_count, v_example;
        IF v_count > 0 THEN
            RAISE EXCEPTION 'refused: % row(s) of % would still point into tenant % through % (%, e.g. %): the row they point at is not part of the copy',
                v_count, p_plan ->> 'table', p_source, r ->> 'name',
                pg_catalog.array_to_string(ARRAY(SELECT pg_catalog.jsonb_array_elements_text(r -> 'child')), ', '),
                v_example USING ERRCODE = 'foreign_key_violation';
        END IF;
    END LOOP;
END
$$;
