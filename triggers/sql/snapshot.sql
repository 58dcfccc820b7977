-- Snapshot documents: a tenant's rows of every captured table as one JSON
-- object, in the shape the first user keeps in simulation_templates
-- .snapshot_data ({"<table>": [rows…], "snapshot_metadata": {…}}), and the
-- import of such a document into another tenant through the copy engine.
-- Re-applied by every install (CREATE OR REPLACE).

-- The key a captured table has in a document: the bare name for a table in
-- schema public (as the user keys them), else the captured_tables spelling
-- (also for a public table called snapshot_metadata, the document's own key).
CREATE OR REPLACE FUNCTION simtrail.snapshot_tables()
RETURNS TABLE (doc_key text, table_name text, relid oid, pk_columns text[],
               real_columns text[], generated_columns text[])
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN n.nspname = 'public' AND c.relname <> 'snapshot_metadata' THEN c.relname::text
                ELSE t.table_name END,
           t.table_name, t.relid, t.pk_columns,
           ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute AS a
                 WHERE a.attrelid = t.relid AND a.attnum > 0 AND NOT a.attisdropped
                   AND a.attgenerated = '' ORDER BY a.attnum),
           ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute AS a
                 WHERE a.attrelid = t.relid AND a.attnum > 0 AND NOT a.attisdropped
                   AND a.attgenerated <> '' ORDER BY a.attnum)
    FROM simtrail.captured_tables AS t
    JOIN pg_catalog.pg_class AS c ON c.oid = t.relid
    JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
$$;

-- What a document says about the configuration it was taken under: the
-- references and copy rules in force, so an import elsewhere can compare.
CREATE OR REPLACE FUNCTION simtrail.snapshot_config()
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.jsonb_build_object(
        'references', coalesce((
            SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                       'table', r.table_name, 'columns', r.columns, 'ref_table', r.ref_table,
                       'ref_columns', r.ref_columns, 'kind', r.kind, 'name', r.name,
                       'as_text', r.as_text)
                   ORDER BY r.table_name, r.columns, r.ref_table, r.name)
            FROM simtrail.references() AS r), '[]'),
        'copy_rules', coalesce((
            SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                       'table', c.table_name, 'column', c.column_name, 'rule', c.rule,
                       'expression', c.expression)
                   ORDER BY c.table_name, c.column_name)
            FROM simtrail.copy_rules AS c), '[]'))
$$;

-- Tenant p_tenant's rows of every captured table, as they are now or (with
-- p_at: mark:NAME, change:ID or a time, as for a rewind) as they were then.
-- Rows are whole (`to_jsonb`, generated columns included), ordered by primary
-- key, and values print the same whatever the session's TimeZone, so the
-- same state always gives the same document.
--
-- Consistency: under REPEATABLE READ (or SERIALIZABLE), which the CLI uses,
-- every table and the log are read in the transaction's one snapshot and no
-- lock is taken, so the class's writers never wait. Under READ COMMITTED
-- each statement would see a newer state, so the tenant's lock is taken
-- (its writers wait until the caller's transaction ends) with the
-- compaction lock shared, as a rewind does.
CREATE OR REPLACE FUNCTION simtrail.export_snapshot(p_tenant text, p_at text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET extra_float_digits = 1 SET TimeZone = 'UTC'
SET IntervalStyle = 'postgres' AS $$
DECLARE
    v_tenant text := simtrail.known_tenant(p_tenant);
    v_locked boolean := pg_catalog.current_setting('transaction_isolation') = 'read committed';
    v_at jsonb;
    v_doc jsonb := '{}';
    v_tables jsonb := '{}';
    v_rows jsonb;
    v_count bigint;
    v_order text;
    r record;
BEGIN
    IF v_locked THEN
        PERFORM simtrail.take_lock('compaction', true);
        PERFORM simtrail.lock_tenant(v_tenant);
    END IF;
    IF p_at IS NULL THEN
        -- A restored cluster is rebased, and a dropped table refused, as
        -- stage_state_at does for a target.
        PERFORM simtrail.rewind_prepare();
        v_at := pg_catalog.jsonb_build_object(
            'kind', 'now', 'at', CASE WHEN v_locked THEN pg_catalog.clock_timestamp()
                                      ELSE pg_catalog.now() END,
            'resolved_by', 'live rows', 'precision', 'exact: the live rows in one snapshot');
    ELSE
        v_at := simtrail.stage_state_at(v_tenant, p_at) - 'changes_undone' - 'moved_in';
    END IF;

    FOR r IN SELECT * FROM simtrail.snapshot_tables() AS s ORDER BY s.doc_key LOOP
        SELECT pg_catalog.string_agg(pg_catalog.format('s.%I', c), ', ' ORDER BY o)
          INTO v_order FROM pg_catalog.unnest(r.pk_columns) WITH ORDINALITY AS u(c, o);
        EXECUTE pg_catalog.format(
            'SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(s.*) ORDER BY %s), ''[]''),'
            ' pg_catalog.count(*) FROM %s AS s',
            v_order, simtrail.tenant_rows_sql(r.table_name, v_tenant, p_at IS NOT NULL))
        INTO v_rows, v_count;
        v_doc := v_doc || pg_catalog.jsonb_build_object(r.doc_key, v_rows);
        v_tables := v_tables || pg_catalog.jsonb_build_object(r.doc_key, pg_catalog.jsonb_build_object(
            'table', r.table_name, 'rows', v_count, 'primary_key', r.pk_columns,
            'generated_columns', r.generated_columns));
    END LOOP;
    IF p_at IS NOT NULL THEN
        PERFORM simtrail.unstage_state();
    END IF;

    RETURN v_doc || pg_catalog.jsonb_build_object('snapshot_metadata',
        pg_catalog.jsonb_build_object(
            'format', 'simtrail snapshot', 'format_version', 1,
            'tenant', v_tenant, 'at', v_at,
            'exported_at', pg_catalog.clock_timestamp(), 'exported_by', session_user,
            'schema_version', (SELECT pg_catalog.max(v.version) FROM simtrail.schema_version AS v),
            'consistency', CASE WHEN v_locked THEN 'tenant lock (read committed)'
                                ELSE 'one snapshot (' || pg_catalog.current_setting('transaction_isolation') || ')' END,
            'tables', v_tables,
            'signed', false,
            'note', 'not a signed document: anyone can edit it; an import checks its shape and'
                    ' the tables and columns it names, not where it came from')
        || simtrail.snapshot_config());
END
$$;

-- Refuse staged rows that reference a row of a captured table which the
-- document does not hold but this database does: copied as they are, they
-- would point into another class (and a row that reaches its tenant
-- through that reference would land in that class). Only references to
-- columns unique on their own (a key): one to a column unique together
-- with the tenant column (an MRN) finds rows of the new class only. A
-- value no row holds is left to the copy (a foreign key refuses it, a
-- declared reference keeps it, as a clone keeps a dangling one).
CREATE OR REPLACE FUNCTION simtrail.check_snapshot_references()
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    g record;
    v_child text;
    v_parent text;
    v_count bigint;
    v_example text;
BEGIN
    FOR g IN
        SELECT f.*, t.relid FROM simtrail.references() AS f
        JOIN simtrail.captured_tables AS t ON t.table_name = f.ref_table
        WHERE EXISTS (SELECT 1 FROM simtrail.copy_rows AS c
                      WHERE c.call_id = pg_catalog.pg_current_xact_id() AND c.table_name = f.table_name)
          AND EXISTS (SELECT 1 FROM pg_catalog.pg_index AS i
                      WHERE i.indrelid = t.relid AND i.indisunique AND i.indpred IS NULL
                        AND i.indnkeyatts = pg_catalog.cardinality(f.ref_columns)
                        AND NOT EXISTS (
                            SELECT 1 FROM pg_catalog.unnest(i.indkey::smallint[]) WITH ORDINALITY AS k(n, o)
                            LEFT JOIN pg_catalog.pg_attribute AS a
                              ON a.attrelid = i.indrelid AND a.attnum = k.n
                            WHERE k.o <= i.indnkeyatts
                              AND (a.attname IS NULL OR a.attname::text <> ALL (f.ref_columns))))
        ORDER BY f.table_name, f.name
    LOOP
        v_child := simtrail.key_text_sql(ARRAY(SELECT pg_catalog.format('s.%I', c)
                                               FROM pg_catalog.unnest(g.columns) WITH ORDINALITY AS u(c, o)
                                               ORDER BY o));
        v_parent := simtrail.key_text_sql(ARRAY(SELECT pg_catalog.format('p.%I', c)
                                                FROM pg_catalog.unnest(g.ref_columns) WITH ORDINALITY AS u(c, o)
                                                ORDER BY o));
        EXECUTE pg_catalog.format(
            'SELECT pg_catalog.count(*), pg_catalog.min(%1$s) FROM %2$s AS s WHERE %3$s'
            ' AND NOT EXISTS (SELECT 1 FROM %4$s AS p WHERE %5$s = %1$s)'
            ' AND %1$s IN (SELECT %5$s FROM %6$s AS p)',
            v_child, simtrail.staged_rows_sql(g.table_name),
            (SELECT pg_catalog.string_agg(pg_catalog.format('s.%I IS NOT NULL', c), ' AND ')
             FROM pg_catalog.unnest(g.columns) AS c),
            simtrail.staged_rows_sql(g.ref_table), v_parent, g.relid::regclass)
        INTO v_count, v_example;
        IF v_count > 0 THEN
            RAISE EXCEPTION '% row(s) of % point through % (%) at rows of % that the document does not hold but this database does (e.g. %): copied, they would point into another class; add those rows to the document',
                v_count, g.table_name, g.name, pg_catalog.array_to_string(g.columns, ', '),
                g.ref_table, v_example USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;
END
$$;

-- Check a snapshot document and stage its rows in simtrail.copy_rows for
-- this transaction (img: the row's real columns, generated ones dropped,
-- missing ones at their defaults, values passed through the column types;
-- key: its primary key).
-- Raises invalid_parameter_value, naming the table, row and column, for
-- anything but an object of captured tables each holding an array of rows
-- that have their primary key, only known columns and values of the
-- columns' types, no key twice, and no reference to a row of a captured
-- table that only this database holds (check_snapshot_references). A table
-- that is not captured is refused, or with p_skip_unknown left out and
-- listed. Returns per table the rows staged, and the tables skipped.
CREATE OR REPLACE FUNCTION simtrail.stage_snapshot(p_doc jsonb, p_skip_unknown boolean)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET extra_float_digits = 1 AS $$
DECLARE
    v_call xid8 := pg_catalog.pg_current_xact_id();
    v_unknown text[];
    v_counts jsonb := '{}';
    v_pk text;
    v_bad record;
    v_stage text;
    v_defaults text;
    r record;
BEGIN
    IF p_doc IS NULL OR pg_catalog.jsonb_typeof(p_doc) <> 'object' THEN
        RAISE EXCEPTION 'a snapshot document is a JSON object of tables ({"patients": [rows…], …}), not %',
            coalesce(pg_catalog.jsonb_typeof(p_doc), 'nothing') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF pg_catalog.jsonb_typeof(p_doc -> 'snapshot_metadata') <> 'object' THEN
        RAISE EXCEPTION 'snapshot_metadata must be an object, not %',
            pg_catalog.jsonb_typeof(p_doc -> 'snapshot_metadata') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT pg_catalog.array_agg(k ORDER BY k) INTO v_unknown
    FROM pg_catalog.jsonb_object_keys(p_doc) AS k
    WHERE k <> 'snapshot_metadata'
      AND NOT EXISTS (SELECT 1 FROM simtrail.snapshot_tables() AS s
                      WHERE k IN (s.doc_key, s.table_name));
    IF v_unknown IS NOT NULL AND NOT p_skip_unknown THEN
        RAISE EXCEPTION 'the document holds % table(s) not captured here: %; configure them, or skip them (--skip-unknown)',
            pg_catalog.cardinality(v_unknown), pg_catalog.array_to_string(v_unknown, ', ')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT s.table_name, s.doc_key INTO v_bad FROM simtrail.snapshot_tables() AS s
    WHERE s.doc_key <> s.table_name AND p_doc ? s.doc_key AND p_doc ? s.table_name LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'table % is in the document twice, as % and as %', v_bad.table_name,
            v_bad.doc_key, v_bad.table_name USING ERRCODE = 'invalid_parameter_value';
    END IF;

    DELETE FROM simtrail.copy_rows AS c WHERE c.call_id = v_call;
    FOR r IN
        SELECT s.*, CASE WHEN p_doc ? s.doc_key THEN s.doc_key ELSE s.table_name END AS given,
               coalesce(p_doc -> s.doc_key, p_doc -> s.table_name) AS doc_rows
        FROM simtrail.snapshot_tables() AS s
        WHERE p_doc ? s.doc_key OR p_doc ? s.table_name
        ORDER BY s.table_name
    LOOP
        IF pg_catalog.jsonb_typeof(r.doc_rows) <> 'array' THEN
            RAISE EXCEPTION '%: expected an array of rows, not %', r.given,
                pg_catalog.jsonb_typeof(r.doc_rows) USING ERRCODE = 'invalid_parameter_value';
        END IF;
        SELECT e.ord - 1 AS i, pg_catalog.jsonb_typeof(e.row) AS what INTO v_bad
        FROM pg_catalog.jsonb_array_elements(r.doc_rows) WITH ORDINALITY AS e(row, ord)
        WHERE pg_catalog.jsonb_typeof(e.row) <> 'object' ORDER BY e.ord LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION '%[%]: expected an object (a row), not %', r.given, v_bad.i, v_bad.what
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        SELECT e.ord - 1 AS i, k AS col INTO v_bad
        FROM pg_catalog.jsonb_array_elements(r.doc_rows) WITH ORDINALITY AS e(row, ord)
        CROSS JOIN LATERAL pg_catalog.jsonb_object_keys(e.row) AS k
        WHERE k <> ALL (r.real_columns || r.generated_columns) ORDER BY e.ord, k LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION '%[%]: table % has no column %', r.given, v_bad.i, r.table_name,
                pg_catalog.quote_ident(v_bad.col) USING ERRCODE = 'invalid_parameter_value';
        END IF;
        SELECT e.ord - 1 AS i, c AS col INTO v_bad
        FROM pg_catalog.jsonb_array_elements(r.doc_rows) WITH ORDINALITY AS e(row, ord)
        CROSS JOIN LATERAL pg_catalog.unnest(r.pk_columns) AS c
        WHERE coalesce(pg_catalog.jsonb_typeof(e.row -> c), 'null') = 'null' ORDER BY e.ord LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION '%[%]: no value for primary key column %', r.given, v_bad.i,
                pg_catalog.quote_ident(v_bad.col) USING ERRCODE = 'invalid_parameter_value';
        END IF;

        SELECT pg_catalog.string_agg(pg_catalog.format('%L, r.%I', c, c), ', ' ORDER BY o)
          INTO v_pk FROM pg_catalog.unnest(r.pk_columns) WITH ORDINALITY AS u(c, o);
        -- A column the row does not give takes its default, as an INSERT
        -- naming only the given columns would (a snapshot older than the
        -- column); the key is always given.
        SELECT pg_catalog.string_agg(pg_catalog.format(
                   ' || CASE WHEN e.row ? %1$L THEN ''{}''::pg_catalog.jsonb'
                   ' ELSE pg_catalog.jsonb_build_object(%1$L, pg_catalog.to_jsonb(CAST((%2$s) AS %3$s))) END',
                   a.attname, simtrail.column_default_sql(r.relid, a.attname),
                   pg_catalog.format_type(a.atttypid, a.atttypmod)), '' ORDER BY a.attnum)
          INTO v_defaults
        FROM pg_catalog.pg_attribute AS a
        WHERE a.attrelid = r.relid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
          AND a.attname::text <> ALL (r.pk_columns)
          AND simtrail.column_default_sql(r.relid, a.attname) IS NOT NULL;
        -- Values pass through the column types, so that they are spelled as
        -- to_jsonb spells them (the keys a reference holds then match) and a
        -- value the type refuses is refused here, naming its row.
        v_stage := pg_catalog.format($q$
            SELECT $1, %1$L, pg_catalog.jsonb_build_object(%2$s), (pg_catalog.to_jsonb(r) - $3)%4$s
            FROM pg_catalog.jsonb_array_elements($2) AS e(row)
            CROSS JOIN LATERAL pg_catalog.jsonb_populate_record(NULL::%3$s, e.row) AS r
            $q$, r.table_name, v_pk, r.relid::regclass, coalesce(v_defaults, ''));
        BEGIN
            EXECUTE 'INSERT INTO simtrail.copy_rows (call_id, table_name, key, img) ' || v_stage
                USING v_call, r.doc_rows, r.generated_columns;
        EXCEPTION WHEN data_exception THEN
            -- Find the first row whose values the types refuse, to name it.
            FOR v_bad IN SELECT e.ord - 1 AS i, e.row
                         FROM pg_catalog.jsonb_array_elements(r.doc_rows) WITH ORDINALITY AS e(row, ord)
                         ORDER BY e.ord LOOP
                BEGIN
                    EXECUTE v_stage USING v_call, pg_catalog.jsonb_build_array(v_bad.row),
                        r.generated_columns;
                EXCEPTION WHEN data_exception THEN
                    RAISE EXCEPTION '%[%]: %', r.given, v_bad.i, SQLERRM
                        USING ERRCODE = 'invalid_parameter_value';
                END;
            END LOOP;
            RAISE EXCEPTION '%: %', r.given, SQLERRM USING ERRCODE = 'invalid_parameter_value';
        END;
        SELECT c.key, pg_catalog.count(*) AS n INTO v_bad FROM simtrail.copy_rows AS c
        WHERE c.call_id = v_call AND c.table_name = r.table_name
        GROUP BY c.key HAVING pg_catalog.count(*) > 1 ORDER BY c.key::text LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION '%: primary key % is given % times', r.given, v_bad.key, v_bad.n
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        v_counts := v_counts || pg_catalog.jsonb_build_object(r.table_name,
                                                             pg_catalog.jsonb_array_length(r.doc_rows));
    END LOOP;
    PERFORM simtrail.check_snapshot_references();
    RETURN pg_catalog.jsonb_build_object('tables', v_counts, 'skipped',
                                         pg_catalog.to_jsonb(coalesce(v_unknown, '{}'::text[])));
END
$$;

-- How the references and copy rules a document recorded differ from the
-- ones in force here (NULL for what the document does not record). An
-- import reports this; the rules applied are always the ones here.
CREATE OR REPLACE FUNCTION simtrail.snapshot_differences(p_metadata jsonb)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH here AS (SELECT simtrail.snapshot_config() AS c),
    sides AS (
        SELECT x.what, x.fields,
               CASE WHEN pg_catalog.jsonb_typeof(p_metadata -> x.what) = 'array'
                    THEN p_metadata -> x.what END AS theirs,
               h.c -> x.what AS ours
        FROM here AS h
        CROSS JOIN (VALUES ('references', ARRAY['table', 'columns', 'ref_table', 'ref_columns']),
                           ('copy_rules', ARRAY['table', 'column', 'rule', 'expression']))
                   AS x(what, fields)
    ), proj AS (
        SELECT s.what, 'theirs' AS side, (SELECT pg_catalog.jsonb_object_agg(f, e -> f)
                                          FROM pg_catalog.unnest(s.fields) AS f) AS item
        FROM sides AS s CROSS JOIN LATERAL pg_catalog.jsonb_array_elements(s.theirs) AS e
        WHERE pg_catalog.jsonb_typeof(e) = 'object'
        UNION
        SELECT s.what, 'ours', (SELECT pg_catalog.jsonb_object_agg(f, e -> f)
                                FROM pg_catalog.unnest(s.fields) AS f)
        FROM sides AS s CROSS JOIN LATERAL pg_catalog.jsonb_array_elements(s.ours) AS e
        WHERE s.theirs IS NOT NULL
    )
    SELECT pg_catalog.jsonb_object_agg(s.what || '_only_in_document', CASE WHEN s.theirs IS NOT NULL THEN
               coalesce((SELECT pg_catalog.jsonb_agg(a.item ORDER BY a.item::text) FROM proj AS a
                         WHERE a.what = s.what AND a.side = 'theirs'
                           AND NOT EXISTS (SELECT 1 FROM proj AS b WHERE b.what = s.what
                                           AND b.side = 'ours' AND b.item = a.item)), '[]') END)
           || pg_catalog.jsonb_object_agg(s.what || '_only_here', CASE WHEN s.theirs IS NOT NULL THEN
               coalesce((SELECT pg_catalog.jsonb_agg(a.item ORDER BY a.item::text) FROM proj AS a
                         WHERE a.what = s.what AND a.side = 'ours'
                           AND NOT EXISTS (SELECT 1 FROM proj AS b WHERE b.what = s.what
                                           AND b.side = 'theirs' AND b.item = a.item)), '[]') END)
    FROM sides AS s
$$;

-- Load a snapshot document into tenant p_to with the copy rules, new keys
-- and remapped references, as a clone does (simtrail.copy_staged). Options:
-- skip_unknown (leave out, and report, tables not captured here), and the
-- copy engine's own (dry_run, mark). Nothing is written when the document
-- is refused.
CREATE OR REPLACE FUNCTION simtrail.import_snapshot(p_doc jsonb, p_to text, p_options jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_options jsonb := simtrail.copy_options(p_options, ARRAY['dry_run', 'mark', 'skip_unknown']);
    v_staged jsonb;
    v_source jsonb;
    v_report jsonb;
BEGIN
    PERFORM simtrail.markable_tenant(p_to);
    v_staged := simtrail.stage_snapshot(p_doc, coalesce((v_options ->> 'skip_unknown')::boolean, false));
    -- What simtrail.copies keeps about the source: the document's own
    -- metadata, less what would only repeat the rows or the configuration.
    v_source := pg_catalog.jsonb_build_object(
        'document', coalesce(p_doc -> 'snapshot_metadata', '{}')
                    - '{tables,references,copy_rules,note}'::text[],
        'tables', v_staged -> 'tables', 'skipped', v_staged -> 'skipped');
    v_report := simtrail.copy_staged('import', NULL, v_source, p_to, v_options - 'skip_unknown');
    DELETE FROM simtrail.copy_rows AS c WHERE c.call_id = pg_catalog.pg_current_xact_id();
    RETURN v_report || pg_catalog.jsonb_build_object(
        'skipped_tables', v_staged -> 'skipped',
        'differences', simtrail.snapshot_differences(p_doc -> 'snapshot_metadata'));
END
$$;
