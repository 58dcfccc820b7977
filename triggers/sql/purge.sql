-- Purge a tenant: delete every captured row of one class, children first,
-- as a normal captured write (so a rewind to a mark before it brings the
-- class back). Re-applied by every install (CREATE OR REPLACE).

-- Collect tenant p_tenant's rows of every captured table into
-- simtrail.rewind_net (action 'delete'; this transaction's rows) and check
-- that deleting them changes no row of another tenant: refused when a row
-- of a captured table that is not being purged references one that is
-- (FK or declared reference), or when an untracked table's foreign key
-- would block the delete. Returns the plan: rows per table, and what the
-- application's own foreign keys will do to untracked rows.
CREATE OR REPLACE FUNCTION simtrail.purge_plan(p_tenant text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_call xid8 := pg_catalog.pg_current_xact_id();
    r record;
    v_pk text;
    v_lookup jsonb;
    v_match text;
    v_count bigint;
    v_problem text;
    v_untracked jsonb := '[]';
BEGIN
    -- A restored cluster is rebased, and a dropped table refused, first.
    PERFORM simtrail.rewind_prepare();
    DELETE FROM simtrail.rewind_net AS n WHERE n.call_id = v_call;
    -- Keys first, deletes after: a tenant-less child is found through its
    -- parent, which must still be there when it is looked up.
    FOR r IN SELECT t.table_name, t.pk_columns FROM simtrail.captured_tables AS t ORDER BY 1 LOOP
        SELECT pg_catalog.string_agg(pg_catalog.format('%L, s.%I', c, c), ', ' ORDER BY o)
          INTO v_pk FROM pg_catalog.unnest(r.pk_columns) WITH ORDINALITY AS u(c, o);
        EXECUTE pg_catalog.format(
            'INSERT INTO simtrail.rewind_net (call_id, table_name, key, live_tenant, action)'
            ' SELECT $1, $2, pg_catalog.jsonb_build_object(%s), $3, ''delete'' FROM %s AS s',
            v_pk, simtrail.tenant_rows_sql(r.table_name, p_tenant, false))
        USING v_call, r.table_name, p_tenant;
    END LOOP;

    -- Rows of captured tables that reference a purged row and are not purged
    -- themselves: another class's (or no class's) rows, which the delete
    -- would cascade into, null, or leave dangling.
    FOR r IN
        SELECT f.table_name, f.columns, f.ref_table, f.ref_columns, f.as_text, f.name,
               t.relid AS child, t.pk_columns, t.tenant_path
        FROM simtrail.references() AS f
        JOIN simtrail.captured_tables AS t ON t.table_name = f.table_name
        JOIN simtrail.captured_tables AS tp ON tp.table_name = f.ref_table
        WHERE f.ref_table IN (SELECT n.table_name FROM simtrail.rewind_net AS n WHERE n.call_id = v_call)
          -- A declared reference to a column unique only together with the
          -- tenant column points into the referencing row's own tenant.
          AND EXISTS (SELECT 1 FROM pg_catalog.pg_index AS i
                      WHERE i.indrelid = tp.relid AND i.indisunique AND i.indpred IS NULL
                        AND 0 <> ALL (i.indkey::pg_catalog.int2[])
                        AND ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute AS a
                                  WHERE a.attrelid = i.indrelid
                                    AND a.attnum = ANY (i.indkey::pg_catalog.int2[]))
                            <@ f.ref_columns)
        ORDER BY f.table_name, f.name
    LOOP
        SELECT pg_catalog.string_agg(
                   CASE WHEN r.as_text THEN pg_catalog.format('c.%I::text = x.%I::text', cc, pc)
                        ELSE pg_catalog.format('c.%I = x.%I', cc, pc) END, ' AND ')
          INTO v_match
          FROM ROWS FROM (pg_catalog.unnest(r.columns), pg_catalog.unnest(r.ref_columns)) AS z(cc, pc);
        SELECT pg_catalog.string_agg(pg_catalog.format('%L, c.%I', c, c), ', ' ORDER BY o)
          INTO v_pk FROM pg_catalog.unnest(r.pk_columns) WITH ORDINALITY AS u(c, o);
        v_lookup := simtrail.render_tenant_lookup(r.tenant_path, 'c');
        EXECUTE pg_catalog.format($q$
            WITH y AS (
                SELECT DISTINCT pg_catalog.jsonb_build_object(%2$s) AS key, %3$s AS tenant
                FROM %4$s AS c%5$s
                JOIN %6$s AS x ON %7$s
                WHERE NOT EXISTS (SELECT 1 FROM simtrail.rewind_net AS n
                                  WHERE n.call_id = $1 AND n.table_name = %1$L
                                    AND n.key = pg_catalog.jsonb_build_object(%2$s)))
            SELECT (SELECT pg_catalog.count(*) FROM y),
                   (SELECT pg_catalog.string_agg(pg_catalog.format('%%s (tenant %%s)', z.key,
                                                                   coalesce(z.tenant, 'none')), '; ')
                    FROM (SELECT * FROM y ORDER BY y.key::text LIMIT 5) AS z)
            $q$, r.table_name, v_pk, v_lookup ->> 'tenant', r.child::regclass, v_lookup ->> 'joins',
            simtrail.tenant_rows_sql(r.ref_table, p_tenant, false), v_match)
        INTO v_count, v_problem USING v_call;
        IF v_count > 0 THEN
            RAISE EXCEPTION 'refused: % row(s) of % outside tenant % reference its rows of % (%), so purging would change them: %',
                v_count, r.table_name, p_tenant, r.ref_table, r.name, v_problem
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
    END LOOP;

    -- Untracked tables' foreign keys act as when the application deletes:
    -- CASCADE and SET NULL/DEFAULT are reported; one that would block the
    -- delete (NO ACTION, RESTRICT) refuses it here, before anything is written.
    FOR r IN
        SELECT k.conname::text AS name, k.conrelid::regclass AS child, t.table_name AS ref_table,
               k.confdeltype,
               ARRAY(SELECT a.attname::text FROM pg_catalog.unnest(k.conkey) WITH ORDINALITY AS x(n, o)
                     JOIN pg_catalog.pg_attribute AS a ON a.attrelid = k.conrelid AND a.attnum = x.n
                     ORDER BY x.o) AS columns,
               ARRAY(SELECT a.attname::text FROM pg_catalog.unnest(k.confkey) WITH ORDINALITY AS x(n, o)
                     JOIN pg_catalog.pg_attribute AS a ON a.attrelid = k.confrelid AND a.attnum = x.n
                     ORDER BY x.o) AS ref_columns
        FROM pg_catalog.pg_constraint AS k
        JOIN simtrail.captured_tables AS t ON t.relid = k.confrelid
        WHERE k.contype = 'f'
          AND k.conrelid NOT IN (SELECT c.relid FROM simtrail.captured_tables AS c)
          AND t.table_name IN (SELECT n.table_name FROM simtrail.rewind_net AS n WHERE n.call_id = v_call)
        ORDER BY 2, 1
    LOOP
        SELECT pg_catalog.string_agg(pg_catalog.format('c.%I = x.%I', cc, pc), ' AND ')
          INTO v_match
          FROM ROWS FROM (pg_catalog.unnest(r.columns), pg_catalog.unnest(r.ref_columns)) AS z(cc, pc);
        EXECUTE pg_catalog.format('SELECT pg_catalog.count(*) FROM %s AS c JOIN %s AS x ON %s',
                                  r.child, simtrail.tenant_rows_sql(r.ref_table, p_tenant, false),
                                  v_match)
        INTO v_count;
        CONTINUE WHEN v_count = 0;
        IF r.confdeltype IN ('a', 'r') THEN
            RAISE EXCEPTION 'refused: % row(s) of % reference tenant %''s rows of % through foreign key % (ON DELETE %), which blocks the delete; delete or repoint them first',
                v_count, r.child, p_tenant, r.ref_table, r.name,
                CASE r.confdeltype WHEN 'a' THEN 'NO ACTION' ELSE 'RESTRICT' END
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
        v_untracked := v_untracked || pg_catalog.jsonb_build_object(
            'table', r.child::text, 'columns', r.columns, 'references', r.ref_table,
            'foreign_key', r.name, 'rows', v_count,
            'on_delete', CASE r.confdeltype WHEN 'c' THEN 'cascade' WHEN 'n' THEN 'set null'
                              ELSE 'set default' END);
    END LOOP;

    RETURN pg_catalog.jsonb_build_object(
        'tables', (SELECT coalesce(pg_catalog.jsonb_object_agg(x.table_name,
                                       pg_catalog.jsonb_build_object('deleted', x.n)), '{}')
                   FROM (SELECT n.table_name, pg_catalog.count(*) AS n FROM simtrail.rewind_net AS n
                         WHERE n.call_id = v_call GROUP BY 1) AS x),
        'totals', pg_catalog.jsonb_build_object(
            'deleted', (SELECT pg_catalog.count(*) FROM simtrail.rewind_net AS n WHERE n.call_id = v_call)),
        'untracked', v_untracked);
END
$$;

-- The part of a purge done under the tenant's lock (see with_tenant_lock):
-- plan, then delete the planned rows, deepest tables first, in origin mode
-- so that the application's triggers and foreign-key actions run as when it
-- deletes. p_args: tenant.
CREATE OR REPLACE FUNCTION simtrail.purge_locked(p_args jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_tenant text := p_args ->> 'tenant';
    v_call xid8 := pg_catalog.pg_current_xact_id();
    v_plan jsonb;
    r record;
    v_pk_match text;
    v_keys text;
    v_left bigint;
BEGIN
    v_plan := simtrail.purge_plan(v_tenant);
    IF pg_catalog.current_setting('session_replication_role') <> 'origin' THEN
        PERFORM pg_catalog.set_config('session_replication_role', 'origin', true);
    END IF;
    FOR r IN
        SELECT t.relid, t.table_name, t.pk_columns, coalesce(d.depth, 0) AS depth
        FROM simtrail.captured_tables AS t
        LEFT JOIN simtrail.reference_depths() AS d ON d.table_name = t.table_name
        WHERE t.table_name IN (SELECT n.table_name FROM simtrail.rewind_net AS n WHERE n.call_id = v_call)
        ORDER BY 4 DESC, 2
    LOOP
        SELECT pg_catalog.string_agg(pg_catalog.format('r.%I = k.%I', x, x), ' AND ')
          INTO v_pk_match FROM pg_catalog.unnest(r.pk_columns) AS x;
        v_keys := pg_catalog.format(
            '(SELECT j.* FROM simtrail.rewind_net AS n'
            ' CROSS JOIN LATERAL pg_catalog.jsonb_populate_record(NULL::%s, n.key) AS j'
            ' WHERE n.call_id = $1 AND n.table_name = $2)', r.relid::regclass);
        EXECUTE pg_catalog.format('DELETE FROM %s AS r USING %s AS k WHERE %s',
                                  r.relid::regclass, v_keys, v_pk_match)
        USING v_call, r.table_name;
        -- An application trigger may have kept a row (a BEFORE DELETE
        -- returning NULL): then the class is not gone, and the purge not done.
        EXECUTE pg_catalog.format('SELECT pg_catalog.count(*) FROM %s AS r JOIN %s AS k ON %s',
                                  r.relid::regclass, v_keys, v_pk_match)
        INTO v_left USING v_call, r.table_name;
        IF v_left > 0 THEN
            RAISE EXCEPTION 'refused: % row(s) of % were still there after the delete (an application trigger kept them?); nothing was purged',
                v_left, r.table_name USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
    END LOOP;
    RETURN v_plan;
END
$$;

-- Delete every captured row of tenant p_tenant (see purge_plan for what is
-- refused). With p_dry_run only the plan is reported: no lock is taken and
-- nothing is written. Returns, per table, the rows deleted.
CREATE OR REPLACE FUNCTION simtrail.purge_tenant(p_tenant text, p_dry_run boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_started timestamptz := pg_catalog.clock_timestamp();
    v_tenant text := simtrail.known_tenant(p_tenant);
    v_dry_run boolean := coalesce(p_dry_run, false);
    v_report jsonb;
BEGIN
    IF v_dry_run THEN
        v_report := simtrail.purge_plan(v_tenant) || '{"attempts": 0}'::jsonb;
    ELSE
        v_report := simtrail.with_tenant_lock(v_tenant, 'simtrail.purge_locked(jsonb)'::regprocedure,
                                              pg_catalog.jsonb_build_object('tenant', v_tenant));
    END IF;
    DELETE FROM simtrail.rewind_net AS n WHERE n.call_id = pg_catalog.pg_current_xact_id();
    RETURN pg_catalog.jsonb_build_object('tenant', v_tenant, 'dry_run', v_dry_run)
        || v_report
        || pg_catalog.jsonb_build_object(
               'duration_ms', pg_catalog.round(EXTRACT(epoch FROM pg_catalog.clock_timestamp() - v_started)
                                               * 1000, 1));
END
$$;
