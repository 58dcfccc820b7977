-- Copies of staged rows: a subtree (a row and every row that references
-- it, transitively: duplicate a patient) and rows a caller staged itself
-- (a snapshot document). Re-applied by every install (CREATE OR REPLACE).

-- The relation of this transaction's staged rows of one table.
CREATE OR REPLACE FUNCTION simtrail.staged_rows_sql(p_table text)
RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.format(
        '(SELECT j.* FROM simtrail.copy_rows AS r'
        ' CROSS JOIN LATERAL pg_catalog.jsonb_populate_record(NULL::%s, r.img) AS j'
        ' WHERE r.call_id = pg_catalog.pg_current_xact_id() AND r.table_name = %L)',
        t.relid::regclass, t.table_name)
    FROM simtrail.captured_tables AS t WHERE t.table_name = p_table
$$;

-- {table: relation} of every table with staged rows.
CREATE OR REPLACE FUNCTION simtrail.staged_relations()
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(pg_catalog.jsonb_object_agg(x.table_name, simtrail.staged_rows_sql(x.table_name)), '{}')
    FROM (SELECT DISTINCT r.table_name FROM simtrail.copy_rows AS r
          WHERE r.call_id = pg_catalog.pg_current_xact_id()) AS x
$$;

-- Stage the subtree of row p_key of p_table, in tenant p_tenant: the row,
-- then every row of the tenant that references a staged row (foreign key
-- or declared reference), until no more come. Only tables of p_tables.
CREATE OR REPLACE FUNCTION simtrail.stage_subtree(
    p_table text, p_key jsonb, p_tenant text, p_tables text[])
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t record;
    r record;
    v_pk text;
    v_added bigint;
    v_total bigint;
    n bigint;
BEGIN
    SELECT c.relid, c.pk_columns INTO t FROM simtrail.captured_tables AS c WHERE c.table_name = p_table;
    SELECT pg_catalog.string_agg(pg_catalog.format('s.%I = k.%I', x, x), ' AND ')
      INTO v_pk FROM pg_catalog.unnest(t.pk_columns) AS x;
    EXECUTE pg_catalog.format(
        'INSERT INTO simtrail.copy_rows (call_id, table_name, key, img)'
        ' SELECT pg_catalog.pg_current_xact_id(), %1$L, pg_catalog.jsonb_build_object(%2$s),'
        '        pg_catalog.to_jsonb(s.*)'
        ' FROM %3$s AS s, pg_catalog.jsonb_populate_record(NULL::%4$s, $1) AS k WHERE %5$s',
        p_table, (SELECT pg_catalog.string_agg(pg_catalog.format('%L, s.%I', x, x), ', ')
                  FROM pg_catalog.unnest(t.pk_columns) AS x),
        simtrail.tenant_rows_sql(p_table, p_tenant, false), t.relid::regclass, v_pk)
    USING p_key;
    GET DIAGNOSTICS v_total = ROW_COUNT;
    IF v_total = 0 THEN
        RAISE EXCEPTION 'table % has no row with key % in tenant %', p_table, p_key, p_tenant
            USING ERRCODE = 'no_data_found';
    END IF;
    LOOP
        v_added := 0;
        FOR r IN
            SELECT g.table_name, g.columns, g.ref_table, g.ref_columns, c.pk_columns
            FROM simtrail.references() AS g
            JOIN simtrail.captured_tables AS c ON c.table_name = g.table_name
            WHERE g.table_name = ANY (p_tables) AND g.ref_table = ANY (p_tables)
            ORDER BY g.table_name, g.name
        LOOP
            EXECUTE pg_catalog.format(
                'INSERT INTO simtrail.copy_rows (call_id, table_name, key, img)'
                ' SELECT pg_catalog.pg_current_xact_id(), %1$L, y.key, y.img FROM ('
                '   SELECT pg_catalog.jsonb_build_object(%2$s) AS key, pg_catalog.to_jsonb(s.*) AS img'
                '   FROM %3$s AS s'
                '   WHERE %4$s IN (SELECT %5$s FROM simtrail.copy_rows AS p'
                '                  WHERE p.call_id = pg_catalog.pg_current_xact_id() AND p.table_name = %6$L)'
                ' ) AS y'
                ' WHERE NOT EXISTS (SELECT 1 FROM simtrail.copy_rows AS e'
                '   WHERE e.call_id = pg_catalog.pg_current_xact_id() AND e.table_name = %1$L AND e.key = y.key)',
                r.table_name,
                (SELECT pg_catalog.string_agg(pg_catalog.format('%L, s.%I', x, x), ', ')
                 FROM pg_catalog.unnest(r.pk_columns) AS x),
                simtrail.tenant_rows_sql(r.table_name, p_tenant, false),
                simtrail.key_text_sql(ARRAY(SELECT pg_catalog.format('s.%I', x)
                                            FROM pg_catalog.unnest(r.columns) WITH ORDINALITY AS u(x, o)
                                            ORDER BY o)),
                simtrail.key_text_sql(ARRAY(SELECT pg_catalog.format('p.img ->> %L', x)
                                            FROM pg_catalog.unnest(r.ref_columns) WITH ORDINALITY AS u(x, o)
                                            ORDER BY o)),
                r.ref_table);
            GET DIAGNOSTICS n = ROW_COUNT;
            v_added := v_added + n;
        END LOOP;
        v_total := v_total + v_added;
        EXIT WHEN v_added = 0;
    END LOOP;
    RETURN v_total;
END
$$;

-- Options of a copy: only these keys, of these types.
CREATE OR REPLACE FUNCTION simtrail.copy_options(p_options jsonb, p_allowed text[])
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_bad text;
BEGIN
    IF p_options IS NULL THEN
        RETURN '{}';
    END IF;
    IF pg_catalog.jsonb_typeof(p_options) <> 'object' THEN
        RAISE EXCEPTION 'copy options must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT k INTO v_bad FROM pg_catalog.jsonb_object_keys(p_options) AS k WHERE k <> ALL (p_allowed) LIMIT 1;
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'unknown copy option %; known: %', pg_catalog.quote_literal(v_bad),
            pg_catalog.array_to_string(p_allowed, ', ') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT k INTO v_bad FROM pg_catalog.jsonb_each(p_options) AS e(k, v)
    WHERE (k IN ('only', 'skip') AND (pg_catalog.jsonb_typeof(v) <> 'array' OR EXISTS (
               SELECT 1 FROM pg_catalog.jsonb_array_elements(v) AS x WHERE pg_catalog.jsonb_typeof(x) <> 'string')))
       OR (k IN ('dry_run', 'skip_unknown') AND pg_catalog.jsonb_typeof(v) <> 'boolean')
       OR (k = 'mark' AND pg_catalog.jsonb_typeof(v) NOT IN ('string', 'null'))
    LIMIT 1;
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'copy option % has the wrong type (only/skip: arrays of category names, dry_run: boolean, mark: text)',
            pg_catalog.quote_literal(v_bad) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN p_options;
END
$$;

-- The tenant of the row of captured table p_table (any spelling) whose
-- primary key is p_key (a JSON object); raises when there is no such row
-- or it belongs to no tenant.
CREATE OR REPLACE FUNCTION simtrail.row_tenant(p_table text, p_key jsonb)
RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_table text := simtrail.captured_table(p_table);
    t record;
    v_lookup jsonb;
    v_tenant text;
BEGIN
    SELECT c.relid, c.pk_columns, c.tenant_path INTO t FROM simtrail.captured_tables AS c
    WHERE c.table_name = v_table;
    -- A field beyond the key would be ignored, and a caller who meant it to
    -- narrow the copy would get something else than asked: refused.
    IF p_key IS NULL OR pg_catalog.jsonb_typeof(p_key) <> 'object' OR NOT p_key ?& t.pk_columns
       OR EXISTS (SELECT 1 FROM pg_catalog.jsonb_object_keys(p_key) AS k
                  WHERE k <> ALL (t.pk_columns)) THEN
        RAISE EXCEPTION 'the key of % is a JSON object with exactly %', v_table,
            pg_catalog.array_to_string(t.pk_columns, ', ') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_lookup := simtrail.render_tenant_lookup(t.tenant_path, 's');
    EXECUTE pg_catalog.format(
        'SELECT %1$s FROM %2$s AS s%3$s, pg_catalog.jsonb_populate_record(NULL::%2$s, $1) AS k WHERE %4$s',
        v_lookup ->> 'tenant', t.relid::regclass, v_lookup ->> 'joins',
        (SELECT pg_catalog.string_agg(pg_catalog.format('s.%I = k.%I', x, x), ' AND ')
         FROM pg_catalog.unnest(t.pk_columns) AS x))
    INTO v_tenant USING p_key;
    IF v_tenant IS NULL THEN
        RAISE EXCEPTION 'table % has no row with key % that belongs to a tenant', v_table, p_key
            USING ERRCODE = 'no_data_found';
    END IF;
    RETURN v_tenant;
END
$$;

-- The part of a subtree copy or a staged copy done under the tenants'
-- locks (see with_tenant_locks). p: kind, from, to, source, dry_run, mark;
-- for a subtree the row (table, key) and the tables it may reach; for a
-- staged copy require_empty.
CREATE OR REPLACE FUNCTION simtrail.copy_locked(p jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_dry boolean := (p ->> 'dry_run')::boolean;
    v_report jsonb;
BEGIN
    BEGIN
        IF p ? 'table' THEN
            DELETE FROM simtrail.copy_rows AS r WHERE r.call_id = pg_catalog.pg_current_xact_id();
            PERFORM simtrail.stage_subtree(p ->> 'table', p -> 'key', p ->> 'from',
                ARRAY(SELECT pg_catalog.jsonb_array_elements_text(p -> 'tables')));
        END IF;
        IF coalesce((p ->> 'require_empty')::boolean, false) THEN
            PERFORM simtrail.require_empty_tenant(p ->> 'to');
        END IF;
        v_report := simtrail.copy_run(p ->> 'kind', p ->> 'from', p -> 'source', p ->> 'to',
                                      simtrail.staged_relations(), true);
        DELETE FROM simtrail.copy_rows AS r WHERE r.call_id = pg_catalog.pg_current_xact_id();
        v_report := simtrail.copy_finish(v_report, p ->> 'mark', v_dry);
        IF v_dry THEN
            PERFORM simtrail.undo_dry_run();
        END IF;
    EXCEPTION WHEN SQLSTATE 'SIMDR' THEN
        v_report := v_report || '{"copy_id": null}';
    END;
    RETURN v_report;
END
$$;

-- Duplicate a row and its subtree into tenant p_to (which may be its own
-- tenant, or any other). p_options: only / skip (config categories; the
-- row's own table always comes), dry_run, mark (none by default).
CREATE OR REPLACE FUNCTION simtrail.copy_subtree(
    p_table text, p_key jsonb, p_to text, p_options jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET extra_float_digits = 1 AS $$
DECLARE
    v_options jsonb := simtrail.copy_options(p_options, ARRAY['only', 'skip', 'dry_run', 'mark']);
    v_table text := simtrail.captured_table(p_table);
    v_to text := simtrail.markable_tenant(p_to);
    v_from text;
    v_only text[];
    v_skip text[];
    v_known text[];
    v_bad text;
    v_tables text[];
    v_report jsonb;
    v_dry boolean := coalesce((v_options ->> 'dry_run')::boolean, false);
    t record;
BEGIN
    SELECT c.relid, c.pk_columns, c.tenant_path INTO t FROM simtrail.captured_tables AS c
    WHERE c.table_name = v_table;
    v_from := simtrail.row_tenant(v_table, p_key);

    SELECT pg_catalog.array_agg(DISTINCT simtrail.table_category(c.table_name)) INTO v_known
    FROM simtrail.captured_tables AS c;
    v_only := ARRAY(SELECT pg_catalog.jsonb_array_elements_text(v_options -> 'only'));
    v_skip := ARRAY(SELECT pg_catalog.jsonb_array_elements_text(v_options -> 'skip'));
    SELECT x INTO v_bad FROM pg_catalog.unnest(v_only || v_skip) AS x WHERE x <> ALL (v_known) LIMIT 1;
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'unknown category %; the config has: %', pg_catalog.quote_literal(v_bad),
            pg_catalog.array_to_string(v_known, ', ') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT pg_catalog.array_agg(c.table_name) INTO v_tables FROM simtrail.captured_tables AS c
    WHERE pg_catalog.to_regclass(c.table_name)::oid = c.relid
      AND (c.table_name = v_table
           OR ((pg_catalog.cardinality(v_only) = 0 OR simtrail.table_category(c.table_name) = ANY (v_only))
               AND simtrail.table_category(c.table_name) <> ALL (v_skip)));

    v_report := simtrail.with_tenant_locks(ARRAY[v_from, v_to], 'simtrail.copy_locked(jsonb)'::regprocedure,
        pg_catalog.jsonb_build_object(
            'kind', 'copy', 'from', v_from, 'to', v_to, 'dry_run', v_dry, 'mark', v_options ->> 'mark',
            'table', v_table, 'key', p_key, 'tables', pg_catalog.to_jsonb(v_tables),
            'source', pg_catalog.jsonb_build_object('table', v_table, 'key', p_key,
                'only', v_options -> 'only', 'skip', v_options -> 'skip')));
    -- The new key of the row asked for, for callers that go on to use it.
    RETURN v_report || pg_catalog.jsonb_build_object('new_key',
        (SELECT k.new_key FROM simtrail.copy_keys AS k
         WHERE k.copy_id = (v_report ->> 'copy_id')::bigint AND k.table_name = v_table
           AND k.old_key = (SELECT pg_catalog.jsonb_object_agg(x, p_key -> x)
                            FROM pg_catalog.unnest(t.pk_columns) AS x)));
END
$$;

-- Copy the rows a caller staged in simtrail.copy_rows (this transaction)
-- into the empty tenant p_to, like a clone: a snapshot import. p_options:
-- dry_run, mark (default `launch`). The caller validated the rows.
CREATE OR REPLACE FUNCTION simtrail.copy_staged(
    p_kind text, p_source_tenant text, p_source jsonb, p_to text, p_options jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET extra_float_digits = 1 AS $$
DECLARE
    v_options jsonb := simtrail.copy_options(p_options, ARRAY['dry_run', 'mark', 'skip_unknown']);
    v_to text := simtrail.markable_tenant(p_to);
    v_dry boolean := coalesce((v_options ->> 'dry_run')::boolean, false);
    v_report jsonb;
BEGIN
    v_report := simtrail.with_tenant_locks(ARRAY[v_to], 'simtrail.copy_locked(jsonb)'::regprocedure,
        pg_catalog.jsonb_build_object(
            'kind', p_kind, 'from', p_source_tenant, 'to', v_to, 'source', p_source,
            'dry_run', v_dry, 'mark', coalesce(v_options ->> 'mark', 'launch'), 'require_empty', true));
    DELETE FROM simtrail.copy_rows AS r WHERE r.call_id = pg_catalog.pg_current_xact_id();
    RETURN v_report;
END
$$;
