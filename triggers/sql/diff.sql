-- Diffs of one tenant: against its own state at a target (what the students
-- did since launch), and against the template it was cloned from (rows paired
-- through the clone's key map). Read-only, apart from this transaction's
-- work rows, which are deleted before returning; no row of the tenant is
-- locked. Run under REPEATABLE READ for a consistent picture.
-- Re-applied by every install (CREATE OR REPLACE).

-- Per table, the rows of tenant p_tenant inserted, deleted and changed since
-- p_target (mark:NAME, change:ID or a time, as for rewind), and for each
-- changed row its columns before and after. A row that left the tenant
-- counts as deleted (moved_to: where it is now, null for no tenant), one that
-- entered as inserted (moved_from). Built on rewind_stage: what the log saw,
-- compared column by column with the live rows; columns added since the
-- target are not compared. Capture gaps since the target are reported, not
-- refused: writes made while capture was off are not in the diff.
CREATE OR REPLACE FUNCTION simtrail.diff_since(p_tenant text, p_target text)
RETURNS jsonb
-- extra_float_digits: below 1 a float passes through text (images) rounded.
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET extra_float_digits = 1 AS $$
DECLARE
    v_tenant text := simtrail.known_tenant(p_tenant);
    v_call xid8 := pg_catalog.pg_current_xact_id();
    v_resolved jsonb;
    v_report jsonb;
BEGIN
    v_resolved := simtrail.rewind_stage(v_tenant, p_target, true, false, false);
    WITH s AS (
        SELECT n.table_name, n.key, n.moves, n.target_img, n.live_img, n.live_tenant, n.drift,
               n.target_img IS NOT NULL AND NOT coalesce(n.moves ? 'entered', false) AS was_here,
               n.live_img IS NOT NULL AND n.live_tenant IS NOT DISTINCT FROM v_tenant AS is_here
        FROM simtrail.rewind_net AS n WHERE n.call_id = v_call
    ), d AS (
        SELECT s.*,
               CASE WHEN s.is_here AND NOT s.was_here THEN 'inserted'
                    WHEN s.was_here AND NOT s.is_here THEN 'deleted'
                    WHEN s.was_here THEN 'changed' END AS kind,
               CASE WHEN s.was_here AND s.is_here THEN
                   (SELECT pg_catalog.jsonb_object_agg(e.key, pg_catalog.jsonb_build_object(
                               'before', e.value, 'after', s.live_img -> e.key))
                    FROM pg_catalog.jsonb_each(s.target_img) AS e
                    WHERE s.live_img ? e.key AND s.live_img -> e.key IS DISTINCT FROM e.value) END AS columns
        FROM s
    ), f AS (
        SELECT d.* FROM d WHERE d.kind IN ('inserted', 'deleted') OR d.columns IS NOT NULL
    )
    SELECT pg_catalog.jsonb_build_object(
        'tables', (SELECT coalesce(pg_catalog.jsonb_object_agg(x.table_name, pg_catalog.jsonb_build_object(
                                       'inserted', x.inserted, 'deleted', x.deleted, 'changed', x.changed)),
                                   '{}')
                   FROM (SELECT f.table_name,
                                pg_catalog.count(*) FILTER (WHERE f.kind = 'inserted') AS inserted,
                                pg_catalog.count(*) FILTER (WHERE f.kind = 'deleted') AS deleted,
                                pg_catalog.count(*) FILTER (WHERE f.kind = 'changed') AS changed
                         FROM f GROUP BY 1) AS x),
        'totals', (SELECT pg_catalog.jsonb_build_object(
                              'inserted', pg_catalog.count(*) FILTER (WHERE f.kind = 'inserted'),
                              'deleted', pg_catalog.count(*) FILTER (WHERE f.kind = 'deleted'),
                              'changed', pg_catalog.count(*) FILTER (WHERE f.kind = 'changed'))
                   FROM f),
        'inserted', (SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                                         'table', f.table_name, 'key', f.key, 'row', f.live_img)
                                     || CASE WHEN f.moves ? 'entered'
                                             THEN pg_catalog.jsonb_build_object('moved_from', f.moves -> 'entered')
                                             ELSE '{}' END
                                     ORDER BY f.table_name, f.key::text), '[]')
                     FROM f WHERE f.kind = 'inserted'),
        'deleted', (SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                                        'table', f.table_name, 'key', f.key, 'row', f.target_img)
                                    || CASE WHEN f.live_img IS NOT NULL
                                            THEN pg_catalog.jsonb_build_object('moved_to', f.live_tenant)
                                            ELSE '{}' END
                                    ORDER BY f.table_name, f.key::text), '[]')
                    FROM f WHERE f.kind = 'deleted'),
        'changed', (SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                                        'table', f.table_name, 'key', f.key, 'columns', f.columns)
                                    ORDER BY f.table_name, f.key::text), '[]')
                    FROM f WHERE f.kind = 'changed'),
        -- Rows whose live value is not what the log last saw (written with
        -- capture off): the diff shows their live value.
        'rows_drifted', (SELECT pg_catalog.count(*) FROM s WHERE s.drift))
      INTO v_report;
    PERFORM simtrail.unstage_state();
    RETURN pg_catalog.jsonb_build_object(
               'tenant', v_tenant, 'target', p_target,
               'resolved', v_resolved - 'changes_undone' - 'capture_gaps_ignored',
               'precision', v_resolved -> 'precision',
               'changes_since', v_resolved -> 'changes_undone',
               'capture_gaps', coalesce(v_resolved -> 'capture_gaps_ignored', '[]'))
           || v_report;
END
$$;

-- The references of captured table p_table that a comparison of copies maps
-- through the key map: its FKs and declared references among captured
-- tables, and the first hop of its tenant path when no FK covers it. A copy
-- remaps a reference even where its column has a copy rule.
CREATE OR REPLACE FUNCTION simtrail.mapped_references(p_table text)
RETURNS TABLE (name text, columns text[], ref_table text, ref_columns text[], as_text boolean)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH refs AS (
        SELECT f.name, f.columns, f.ref_table, f.ref_columns, f.as_text
        FROM simtrail.references() AS f WHERE f.table_name = p_table
        UNION ALL
        SELECT 'tenant path', ARRAY[t.tenant_path -> 'hops' -> 0 ->> 'column'],
               t.tenant_path -> 'hops' -> 0 ->> 'parent',
               ARRAY[t.tenant_path -> 'hops' -> 0 ->> 'parent_column'], false
        FROM simtrail.captured_tables AS t
        WHERE t.table_name = p_table AND pg_catalog.jsonb_array_length(t.tenant_path -> 'hops') > 0
          AND NOT EXISTS (SELECT 1 FROM simtrail.references() AS f
                          WHERE f.table_name = p_table
                            AND f.columns = ARRAY[t.tenant_path -> 'hops' -> 0 ->> 'column'])
    )
    SELECT r.* FROM refs AS r
$$;

-- The columns of captured table p_table whose values a copy makes anew, so
-- that a clone differs from its template there on purpose: copy rules other
-- than keep, and a unique column's default (copy_table_plan decides). When
-- the plan refuses (the config changed since), the copy rules alone.
CREATE OR REPLACE FUNCTION simtrail.copy_generated_columns(p_table text)
RETURNS text[]
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_columns text[];
BEGIN
    BEGIN
        SELECT pg_catalog.array_agg(e ->> 'name' ORDER BY e ->> 'name') INTO v_columns
        FROM pg_catalog.jsonb_array_elements(simtrail.copy_table_plan(p_table) -> 'columns') AS e
        WHERE e ->> 'how' IN ('gen', 'null') AND NOT (e ->> 'in_pk')::boolean;
    EXCEPTION WHEN object_not_in_prerequisite_state THEN
        SELECT pg_catalog.array_agg(u.column_name ORDER BY u.column_name) INTO v_columns
        FROM simtrail.copy_rules AS u WHERE u.table_name = p_table AND u.rule <> 'keep';
    END;
    RETURN coalesce(v_columns, '{}');
END
$$;

-- How to read, for reference p_columns of a template row `t`, what the
-- clone made by copy p_copy should hold there: the clone's key for the row
-- referenced when that row was copied, else the value itself (a reference
-- out of the copy is kept). Returns {"join": a LEFT JOIN (alias p_alias)
-- for the FROM clause after `t`, "expected": SQL of a text[]}. Joins, not
-- a subquery per row: copy_keys is indexed by copy only.
CREATE OR REPLACE FUNCTION simtrail.render_mapped_reference(
    p_copy bigint, p_template text, p_columns text[], p_ref_table text, p_ref_columns text[],
    p_as_text boolean, p_alias text)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p record;
    v_same text;
    v_mapped text;
    v_old_key text;
    v_match text;
    v_pk_match text;
    v_columns text;
    v_join text;
BEGIN
    SELECT t.relid, t.pk_columns INTO p FROM simtrail.captured_tables AS t WHERE t.table_name = p_ref_table;
    SELECT pg_catalog.string_agg(pg_catalog.format('(t.%I)::text', c), ', ' ORDER BY o)
      INTO v_same FROM pg_catalog.unnest(p_columns) WITH ORDINALITY AS u(c, o);
    IF (SELECT pg_catalog.array_agg(x ORDER BY x) FROM pg_catalog.unnest(p_ref_columns) AS x)
       = (SELECT pg_catalog.array_agg(x ORDER BY x) FROM pg_catalog.unnest(p.pk_columns) AS x) THEN
        -- To the primary key: straight through copy_keys. A key held as text
        -- is compared as the JSON the key map holds: a string, or a number
        -- for a numeric key.
        SELECT pg_catalog.string_agg(pg_catalog.format('%L, %s', rc,
                   CASE WHEN NOT p_as_text THEN pg_catalog.format('t.%I', cc)
                        WHEN y.typcategory = 'N' THEN pg_catalog.format('(t.%I)::pg_catalog.numeric', cc)
                        ELSE pg_catalog.format('(t.%I)::text', cc) END), ', '),
               pg_catalog.string_agg(pg_catalog.format('%I.new_key ->> %L', p_alias, rc), ', ')
          INTO v_old_key, v_mapped
          FROM ROWS FROM (pg_catalog.unnest(p_columns), pg_catalog.unnest(p_ref_columns)) AS z(cc, rc)
          JOIN pg_catalog.pg_attribute AS a ON a.attrelid = p.relid AND a.attname = z.rc
          JOIN pg_catalog.pg_type AS y ON y.oid = a.atttypid;
        v_join := pg_catalog.format(
            ' LEFT JOIN simtrail.copy_keys AS %1$I ON %1$I.copy_id = %2$s AND %1$I.table_name = %3$L'
            ' AND %1$I.old_key = pg_catalog.jsonb_build_object(%4$s)',
            p_alias, p_copy, p_ref_table, v_old_key);
    ELSE
        -- To another unique column: the template's row by it, then its clone.
        SELECT pg_catalog.string_agg(
                   CASE WHEN p_as_text THEN pg_catalog.format('%I.%I::text = t.%I::text', p_alias, 'old_' || rc, cc)
                        ELSE pg_catalog.format('%I.%I = t.%I', p_alias, 'old_' || rc, cc) END, ' AND '),
               pg_catalog.string_agg(pg_catalog.format('o.%I AS %I, (n.%I)::text AS %I',
                                                       rc, 'old_' || rc, rc, 'new_' || rc), ', '),
               pg_catalog.string_agg(pg_catalog.format('%I.%I', p_alias, 'new_' || rc), ', ')
          INTO v_match, v_columns, v_mapped
          FROM ROWS FROM (pg_catalog.unnest(p_columns), pg_catalog.unnest(p_ref_columns)) AS z(cc, rc);
        SELECT pg_catalog.string_agg(pg_catalog.format('%L, o.%I', c, c), ', '),
               pg_catalog.string_agg(pg_catalog.format('n.%I = j.%I', c, c), ' AND ')
          INTO v_old_key, v_pk_match FROM pg_catalog.unnest(p.pk_columns) AS c;
        v_join := pg_catalog.format(
            ' LEFT JOIN (SELECT k.copy_id, %1$s FROM %2$s AS o'
            '   JOIN simtrail.copy_keys AS k ON k.copy_id = %3$s AND k.table_name = %4$L'
            '    AND k.old_key = pg_catalog.jsonb_build_object(%5$s)'
            '   CROSS JOIN LATERAL pg_catalog.jsonb_populate_record(NULL::%6$s, k.new_key) AS j'
            '   JOIN %6$s AS n ON %7$s) AS %8$I ON %9$s',
            v_columns, simtrail.tenant_rows_sql(p_ref_table, p_template, false), p_copy, p_ref_table,
            v_old_key, p.relid::regclass, v_pk_match, p_alias, v_match);
    END IF;
    RETURN pg_catalog.jsonb_build_object(
        'join', v_join,
        'expected', pg_catalog.format('CASE WHEN %1$I.copy_id IS NULL THEN ARRAY[%2$s] ELSE ARRAY[%3$s] END',
                                      p_alias, v_same, v_mapped));
END
$$;

-- Clone p_tenant against the template p_template it was cloned from (the
-- newest such clone in simtrail.copies), now: per table the rows only in
-- the clone (added to it, or deleted from the template since), only in the
-- template (deleted from the clone, or added to the template since), and
-- the pairs whose values differ. Rows pair through the clone's key map
-- (simtrail.copy_keys). Compared: every column but the primary key, the
-- tenant column and the columns a copy makes anew (copy_generated_columns,
-- listed as ignored); references are compared through the key map (the
-- clone must hold the clone's key for a copied row, the same value for a
-- row outside the copy).
CREATE OR REPLACE FUNCTION simtrail.diff_against(p_tenant text, p_template text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET extra_float_digits = 1 AS $$
DECLARE
    v_clone text := simtrail.known_tenant(p_tenant);
    v_template text := simtrail.known_tenant(p_template);
    v_copy record;
    r record;
    f record;
    v_pk_t text;
    v_pk_c text;
    v_exp text;
    v_got text;
    v_joins text;
    v_map jsonb;
    v_ref_columns jsonb;
    v_skip text[];
    v_plain text[];
    v_ignored text[];
    v_part jsonb;
    v_tables jsonb := '{}';
    v_only_clone jsonb := '[]';
    v_only_template jsonb := '[]';
    v_differ jsonb := '[]';
BEGIN
    PERFORM simtrail.rewind_prepare();
    SELECT c.* INTO v_copy FROM simtrail.copies AS c
    WHERE c.kind = 'clone' AND c.source_tenant = v_template AND c.target_tenant = v_clone
    ORDER BY c.id DESC LIMIT 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no clone of tenant % into tenant % is recorded; diff against a template needs the key map of a clone',
            v_template, v_clone USING ERRCODE = 'invalid_parameter_value';
    END IF;

    FOR r IN SELECT t.relid, t.table_name, t.pk_columns, t.tenant_path FROM simtrail.captured_tables AS t
             ORDER BY t.table_name LOOP
        SELECT pg_catalog.string_agg(pg_catalog.format('%L, t.%I', c, c), ', ' ORDER BY o),
               pg_catalog.string_agg(pg_catalog.format('%L, c.%I', c, c), ', ' ORDER BY o)
          INTO v_pk_t, v_pk_c FROM pg_catalog.unnest(r.pk_columns) WITH ORDINALITY AS u(c, o);
        v_ignored := simtrail.copy_generated_columns(r.table_name);
        v_exp := '';
        v_got := '';
        v_ref_columns := '{}';
        v_skip := r.pk_columns || v_ignored
                  || CASE WHEN pg_catalog.jsonb_array_length(r.tenant_path -> 'hops') = 0
                          THEN ARRAY[r.tenant_path ->> 'tenant_column'] ELSE '{}' END;
        v_joins := '';
        FOR f IN SELECT m.*, pg_catalog.row_number() OVER (ORDER BY m.name) AS n
                 FROM simtrail.mapped_references(r.table_name) AS m ORDER BY m.name LOOP
            v_map := simtrail.render_mapped_reference(v_copy.id, v_template, f.columns, f.ref_table,
                                                      f.ref_columns, f.as_text, 'm' || f.n);
            v_joins := v_joins || (v_map ->> 'join');
            v_exp := v_exp || pg_catalog.format(', %L, %s', f.name, v_map ->> 'expected');
            v_got := v_got || pg_catalog.format(', %L, ARRAY[%s]', f.name,
                         (SELECT pg_catalog.string_agg(pg_catalog.format('(c.%I)::text', x), ', ' ORDER BY o)
                          FROM pg_catalog.unnest(f.columns) WITH ORDINALITY AS u(x, o)));
            v_ref_columns := v_ref_columns || pg_catalog.jsonb_build_object(f.name, f.columns);
            v_skip := v_skip || f.columns;
        END LOOP;
        SELECT coalesce(pg_catalog.array_agg(a.attname::text ORDER BY a.attnum), '{}') INTO v_plain
        FROM pg_catalog.pg_attribute AS a
        WHERE a.attrelid = r.relid AND a.attnum > 0 AND NOT a.attisdropped
          AND a.attname::text <> ALL (v_skip);

        EXECUTE pg_catalog.format($q$
            WITH t AS (
                SELECT z.*, km.copy_id IS NOT NULL AS mapped FROM (
                    SELECT pg_catalog.jsonb_build_object(%1$s) AS key, pg_catalog.to_jsonb(t.*) AS img,
                           pg_catalog.jsonb_build_object(%3$s) AS refs
                    FROM %5$s AS t%7$s) AS z
                LEFT JOIN simtrail.copy_keys AS km
                  ON km.copy_id = $1 AND km.table_name = $2 AND km.old_key = z.key
            ), c AS (
                SELECT z.*, k.old_key FROM (
                    SELECT pg_catalog.jsonb_build_object(%2$s) AS key, pg_catalog.to_jsonb(c.*) AS img,
                           pg_catalog.jsonb_build_object(%4$s) AS refs
                    FROM %6$s AS c) AS z
                LEFT JOIN simtrail.copy_keys AS k
                  ON k.copy_id = $1 AND k.table_name = $2 AND k.new_key = z.key
            ), p AS (
                SELECT t.key AS tkey, t.img AS timg, t.refs AS trefs, t.mapped,
                       c.key AS ckey, c.img AS cimg, c.refs AS crefs, c.old_key
                FROM t FULL JOIN c ON c.old_key = t.key
            ), q AS (
                SELECT p.*, (SELECT pg_catalog.jsonb_object_agg(w.col, w.diff) FROM (
                                 SELECT u.col, pg_catalog.jsonb_build_object(
                                            'template', p.timg -> u.col, 'clone', p.cimg -> u.col) AS diff
                                 FROM pg_catalog.unnest($3::text[]) AS u(col)
                                 WHERE p.timg -> u.col IS DISTINCT FROM p.cimg -> u.col
                                 UNION ALL
                                 SELECT x.col, pg_catalog.jsonb_build_object(
                                            'template', p.timg -> x.col, 'clone', p.cimg -> x.col,
                                            'expected', e.value -> (x.o::integer - 1))
                                 FROM pg_catalog.jsonb_each(p.trefs) AS e
                                 CROSS JOIN LATERAL pg_catalog.jsonb_array_elements_text($4 -> e.key)
                                      WITH ORDINALITY AS x(col, o)
                                 WHERE e.value IS DISTINCT FROM p.crefs -> e.key) AS w) AS cols
                FROM p WHERE p.tkey IS NOT NULL AND p.ckey IS NOT NULL
            )
            SELECT pg_catalog.jsonb_build_object(
                'counts', pg_catalog.jsonb_build_object(
                    'only_in_clone', (SELECT pg_catalog.count(*) FROM p WHERE p.tkey IS NULL),
                    'only_in_template', (SELECT pg_catalog.count(*) FROM p WHERE p.ckey IS NULL),
                    'differ', (SELECT pg_catalog.count(*) FROM q WHERE q.cols IS NOT NULL),
                    'same', (SELECT pg_catalog.count(*) FROM q WHERE q.cols IS NULL),
                    'ignored_columns', $5::text[]),
                'only_in_clone', (SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                        'table', $2, 'key', p.ckey, 'row', p.cimg,
                        'why', CASE WHEN p.old_key IS NULL THEN 'added to the clone'
                                    ELSE 'deleted from the template' END) ORDER BY p.ckey::text), '[]')
                    FROM p WHERE p.tkey IS NULL),
                'only_in_template', (SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                        'table', $2, 'key', p.tkey, 'row', p.timg,
                        'why', CASE WHEN p.mapped THEN 'deleted from the clone'
                                    ELSE 'added to the template' END)
                        ORDER BY p.tkey::text), '[]')
                    FROM p WHERE p.ckey IS NULL),
                'differ', (SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                        'table', $2, 'template_key', q.tkey, 'clone_key', q.ckey, 'columns', q.cols)
                        ORDER BY q.tkey::text), '[]')
                    FROM q WHERE q.cols IS NOT NULL))
            $q$, v_pk_t, v_pk_c, pg_catalog.ltrim(v_exp, ', '), pg_catalog.ltrim(v_got, ', '),
            simtrail.tenant_rows_sql(r.table_name, v_template, false),
            simtrail.tenant_rows_sql(r.table_name, v_clone, false), v_joins)
        INTO v_part USING v_copy.id, r.table_name, v_plain, v_ref_columns, v_ignored;
        IF (v_part #>> '{counts,only_in_clone}')::bigint + (v_part #>> '{counts,only_in_template}')::bigint
           + (v_part #>> '{counts,differ}')::bigint + (v_part #>> '{counts,same}')::bigint > 0 THEN
            v_tables := v_tables || pg_catalog.jsonb_build_object(r.table_name, v_part -> 'counts');
        END IF;
        v_only_clone := v_only_clone || (v_part -> 'only_in_clone');
        v_only_template := v_only_template || (v_part -> 'only_in_template');
        v_differ := v_differ || (v_part -> 'differ');
    END LOOP;

    RETURN pg_catalog.jsonb_build_object(
        'tenant', v_clone, 'template', v_template,
        'copy', pg_catalog.jsonb_build_object('id', v_copy.id, 'created_at', v_copy.created_at,
                                              'created_by', v_copy.created_by, 'source', v_copy.source),
        'tables', v_tables,
        'totals', pg_catalog.jsonb_build_object(
            'only_in_clone', pg_catalog.jsonb_array_length(v_only_clone),
            'only_in_template', pg_catalog.jsonb_array_length(v_only_template),
            'differ', pg_catalog.jsonb_array_length(v_differ)),
        'only_in_clone', v_only_clone, 'only_in_template', v_only_template, 'differ', v_differ);
END
$$;
