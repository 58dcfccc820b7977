-- Generations (one per cluster the log was written in), rebasing after a
-- dump and restore, and the schema changes of captured tables that a rewind
-- must know about: renamed columns and dropped tables.
-- Re-applied by every install (CREATE OR REPLACE), after the versioned files.

-- NULL where the role may not read pg_control_system(): the OID and xid
-- checks below still notice a restore.
CREATE OR REPLACE FUNCTION simtrail.system_identifier()
RETURNS bigint
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN (SELECT s.system_identifier FROM pg_catalog.pg_control_system() AS s);
EXCEPTION WHEN insufficient_privilege THEN
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION simtrail.next_change_id()
RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN s.is_called THEN s.last_value + 1 ELSE s.last_value END
    FROM simtrail.change_id_seq AS s
$$;

-- True when this is not the cluster the newest generation was written in:
-- another system identifier, another OID for simtrail.changes (pg_dump
-- never keeps OIDs), or transaction ids below ones already seen (a
-- cluster's 64-bit xids never go back).
CREATE OR REPLACE FUNCTION simtrail.cluster_changed()
RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT g.anchor_oid <> 'simtrail.changes'::regclass::oid
           OR coalesce(g.system_identifier <> simtrail.system_identifier(), false)
           OR pg_catalog.pg_snapshot_xmax(pg_catalog.pg_current_snapshot())
              < GREATEST(g.seen_xmin, g.first_xid)
    FROM simtrail.clusters AS g ORDER BY g.generation DESC LIMIT 1
$$;

-- Re-resolve each captured table's OID from its name (pg_dump never keeps
-- OIDs; a table may have been dropped and created again). All rows that
-- change go out and back in at once: a new OID may be an old one of another
-- table. Tables that are gone are dropped from the bookkeeping only with
-- p_drop_gone (their old OID means nothing in a new cluster). Returns them.
CREATE OR REPLACE FUNCTION simtrail.reresolve_relids(p_drop_gone boolean)
RETURNS text[]
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_tables jsonb;
    v_gone text[];
    v_fn text;
BEGIN
    SELECT pg_catalog.array_agg(t.table_name) FILTER (WHERE pg_catalog.to_regclass(t.table_name) IS NULL),
           pg_catalog.jsonb_agg(pg_catalog.to_jsonb(t) || pg_catalog.jsonb_build_object(
               'relid', pg_catalog.to_regclass(t.table_name)::oid))
             FILTER (WHERE pg_catalog.to_regclass(t.table_name) IS NOT NULL
                       AND pg_catalog.to_regclass(t.table_name)::oid <> t.relid)
      INTO v_gone, v_tables
      FROM simtrail.captured_tables AS t;
    IF p_drop_gone THEN
        FOR v_fn IN SELECT t.function_name FROM simtrail.captured_tables AS t
                    WHERE t.table_name = ANY (coalesce(v_gone, ARRAY[]::text[])) LOOP
            EXECUTE pg_catalog.format('DROP FUNCTION IF EXISTS simtrail.%I()', v_fn);
        END LOOP;
        DELETE FROM simtrail.captured_tables AS t
        WHERE t.table_name = ANY (coalesce(v_gone, ARRAY[]::text[]));
    END IF;
    IF v_tables IS NOT NULL THEN
        DELETE FROM simtrail.captured_tables AS t
        WHERE t.table_name IN (SELECT e ->> 'table_name' FROM pg_catalog.jsonb_array_elements(v_tables) AS e);
        -- A gone table's stale OID may now belong to one of these.
        DELETE FROM simtrail.captured_tables AS t
        WHERE t.relid IN (SELECT (e ->> 'relid')::oid FROM pg_catalog.jsonb_array_elements(v_tables) AS e);
        INSERT INTO simtrail.captured_tables
        SELECT (pg_catalog.jsonb_populate_record(NULL::simtrail.captured_tables, e)).*
        FROM pg_catalog.jsonb_array_elements(v_tables) AS e;
    END IF;
    RETURN coalesce(v_gone, ARRAY[]::text[]);
END
$$;

-- Start a new generation for this cluster. Called with the rebase lock held.
--
-- Where the new generation begins: every change below the old generation's
-- seen_change_id was in the log before the dump. Above it, a change whose xid
-- this cluster has not reached yet is certainly old; the boundary goes right
-- after the last of those, and everything after it is taken as new (ids grow
-- in time, and the restored sequence hands out ids after the old ones). A
-- change above the boundary whose xid is at or above the old seen_xmin and
-- below this cluster's next xid could have been either: it is counted in
-- `ambiguous`, and doctor warns about it.
CREATE OR REPLACE FUNCTION simtrail.rebase()
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_old record;
    v_next_xid xid8 := pg_catalog.pg_snapshot_xmax(pg_catalog.pg_current_snapshot());
    v_boundary bigint;
    v_ambiguous bigint;
    v_moved bigint;
    v_gone text[];
BEGIN
    SELECT g.* INTO v_old FROM simtrail.clusters AS g ORDER BY g.generation DESC LIMIT 1;
    SELECT GREATEST(v_old.seen_change_id, v_old.first_change_id,
                    coalesce(pg_catalog.max(c.id) + 1, 0))
      INTO v_boundary
      FROM simtrail.changes AS c
     WHERE c.id >= v_old.seen_change_id AND c.xact_id >= v_next_xid;
    SELECT pg_catalog.count(*) INTO v_ambiguous FROM simtrail.changes AS c
     WHERE c.id >= v_boundary AND c.xact_id >= v_old.seen_xmin AND c.xact_id < v_next_xid;

    INSERT INTO simtrail.clusters (generation, system_identifier, anchor_oid, first_change_id,
                                   first_xid, seen_change_id, seen_xmin, ambiguous)
    VALUES (v_old.generation + 1, simtrail.system_identifier(), 'simtrail.changes'::regclass::oid,
            v_boundary, v_next_xid, GREATEST(v_boundary, simtrail.next_change_id()),
            pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot()), v_ambiguous);

    -- The old cluster's transactions move aside: this cluster's xids may
    -- take the same values.
    WITH moved AS (
        DELETE FROM simtrail.transactions AS x WHERE x.first_change_id < v_boundary
        RETURNING x.xact_id, x.first_change_id, x.started_at, x.actor, x.rewind_id
    )
    INSERT INTO simtrail.transactions_history
        (generation, xact_id, first_change_id, started_at, actor, rewind_id)
    SELECT v_old.generation, m.xact_id, m.first_change_id, m.started_at, m.actor, m.rewind_id
    FROM moved AS m
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS v_moved = ROW_COUNT;

    v_gone := simtrail.reresolve_relids(true);

    -- Attribute numbers change too (a restore leaves out dropped columns):
    -- carry each column's names over to its number here, by its latest name.
    WITH latest AS (
        SELECT DISTINCT ON (n.table_name, n.attnum) n.table_name, n.attnum, n.name
        FROM simtrail.column_names AS n ORDER BY n.table_name, n.attnum, n.id DESC
    ), renumber AS (
        SELECT l.table_name, l.attnum AS old_attnum, a.attnum AS new_attnum
        FROM latest AS l
        JOIN pg_catalog.pg_attribute AS a
          ON a.attrelid = pg_catalog.to_regclass(l.table_name) AND a.attname = l.name
         AND a.attnum > 0 AND NOT a.attisdropped
    ), kept AS (
        DELETE FROM simtrail.column_names AS n
        RETURNING n.id, n.table_name, n.attnum, n.name, n.seen_at
    )
    INSERT INTO simtrail.column_names (table_name, attnum, name, seen_at)
    SELECT k.table_name, r.new_attnum, k.name, k.seen_at
    FROM kept AS k JOIN renumber AS r ON r.table_name = k.table_name AND r.old_attnum = k.attnum
    ORDER BY k.id
    ON CONFLICT DO NOTHING;

    RETURN pg_catalog.jsonb_build_object(
        'generation', v_old.generation + 1, 'first_change_id', v_boundary,
        'ambiguous', v_ambiguous, 'transactions_moved', v_moved,
        'tables_gone', coalesce(pg_catalog.to_jsonb(v_gone), '[]'));
END
$$;

-- The current generation, after starting a new one if the cluster changed.
-- Install, the daemon, marks, ticks and rewinds all come through here first.
CREATE OR REPLACE FUNCTION simtrail.ensure_generation()
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_rebased jsonb;
BEGIN
    IF NOT simtrail.cluster_changed() THEN
        RETURN NULL;
    END IF;
    PERFORM simtrail.take_lock('rebase');
    -- Someone else may have rebased while we waited.
    IF NOT simtrail.cluster_changed() THEN
        RETURN NULL;
    END IF;
    v_rebased := simtrail.rebase();
    RAISE NOTICE 'simtrail: this is a new cluster; history rebased as generation % from change %',
        v_rebased ->> 'generation', v_rebased ->> 'first_change_id';
    RETURN v_rebased;
END
$$;

CREATE OR REPLACE FUNCTION simtrail.current_generation()
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM simtrail.ensure_generation();
    RETURN (SELECT pg_catalog.max(g.generation) FROM simtrail.clusters AS g);
END
$$;

-- A tick also records how far the log had got: the old side of the
-- boundary should a restore follow.
CREATE OR REPLACE FUNCTION simtrail.tick_generation()
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_generation integer := simtrail.current_generation();
BEGIN
    PERFORM simtrail.note_seen();
    RETURN v_generation;
END
$$;

CREATE OR REPLACE FUNCTION simtrail.note_seen()
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    UPDATE simtrail.clusters AS g
       SET seen_change_id = GREATEST(g.seen_change_id, simtrail.next_change_id()),
           seen_xmin = GREATEST(g.seen_xmin,
                                pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())),
           seen_at = pg_catalog.clock_timestamp()
     WHERE g.generation = (SELECT pg_catalog.max(z.generation) FROM simtrail.clusters AS z)
$$;

-- The first change id of a generation, and of the one after it (NULL for
-- the newest).
CREATE OR REPLACE FUNCTION simtrail.generation_bounds(p_generation integer)
RETURNS TABLE (first_id bigint, next_id bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT (SELECT g.first_change_id FROM simtrail.clusters AS g WHERE g.generation = p_generation),
           (SELECT pg_catalog.min(g.first_change_id) FROM simtrail.clusters AS g
            WHERE g.generation > p_generation)
$$;

-- effective_scan_from for a cut of any generation: an older generation's
-- transactions are in transactions_history.
CREATE OR REPLACE FUNCTION simtrail.cut_scan_from(
    p_scan_from bigint, p_snapshot pg_snapshot, p_generation integer)
RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT GREATEST(b.first_id, CASE WHEN b.next_id IS NULL
        THEN simtrail.effective_scan_from(p_scan_from, p_snapshot)
        ELSE LEAST(p_scan_from,
                   (SELECT pg_catalog.min(x.first_change_id) FROM simtrail.transactions_history AS x
                    WHERE x.generation = p_generation
                      AND x.xact_id IN (SELECT pg_catalog.pg_snapshot_xip(p_snapshot))),
                   (SELECT pg_catalog.min(x.first_change_id) FROM simtrail.transactions_history AS x
                    WHERE x.generation = p_generation
                      AND x.xact_id >= pg_catalog.pg_snapshot_xmax(p_snapshot)
                      AND x.first_change_id < p_scan_from)) END)
    FROM simtrail.generation_bounds(p_generation) AS b
$$;

-- The condition on simtrail.changes AS c selecting the tenant's changes that
-- a cut (a mark or tick snapshot of generation p_generation) did not see:
-- within its generation, those its snapshot does not show; every change of
-- a later generation; none of an earlier one.
CREATE OR REPLACE FUNCTION simtrail.cut_predicate(
    p_tenant text, p_scan_from bigint, p_snapshot pg_snapshot, p_generation integer)
RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.format(
        'c.tenant_id = %L AND c.id >= %s AND (%s NOT pg_catalog.pg_visible_in_snapshot(c.xact_id, %L::pg_snapshot))',
        p_tenant, simtrail.cut_scan_from(p_scan_from, p_snapshot, p_generation),
        CASE WHEN b.next_id IS NULL THEN ''
             ELSE pg_catalog.format('c.id >= %s OR', b.next_id) END,
        p_snapshot)
    FROM simtrail.generation_bounds(p_generation) AS b
$$;

-- Remember every live column's name under its number, so a rename shows.
CREATE OR REPLACE FUNCTION simtrail.record_column_names()
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO simtrail.column_names (table_name, attnum, name)
    SELECT t.table_name, a.attnum, a.attname::text
    FROM simtrail.captured_tables AS t
    JOIN pg_catalog.pg_attribute AS a ON a.attrelid = t.relid AND a.attnum > 0 AND NOT a.attisdropped
    WHERE pg_catalog.to_regclass(t.table_name) = t.relid
    ON CONFLICT DO NOTHING
$$;

-- Columns of captured tables known under an older name.
CREATE OR REPLACE FUNCTION simtrail.renamed_columns()
RETURNS TABLE (table_name text, old_name text, new_name text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT n.table_name, n.name, a.attname::text
    FROM simtrail.column_names AS n
    JOIN simtrail.captured_tables AS t ON t.table_name = n.table_name
    JOIN pg_catalog.pg_attribute AS a
      ON a.attrelid = t.relid AND a.attnum = n.attnum AND a.attnum > 0 AND NOT a.attisdropped
    WHERE n.name <> a.attname::text AND pg_catalog.to_regclass(t.table_name) = t.relid
    ORDER BY 1, 2
$$;

-- A rewind whose changes hold images written under a column's old name
-- would leave that column unrestored: refuse, naming it.
CREATE OR REPLACE FUNCTION simtrail.check_renames(p_predicate text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
    v_found boolean;
BEGIN
    PERFORM simtrail.record_column_names();
    FOR r IN SELECT * FROM simtrail.renamed_columns() LOOP
        EXECUTE pg_catalog.format(
            'SELECT EXISTS (SELECT 1 FROM simtrail.changes AS c WHERE (%s) AND c.table_name = %L'
            ' AND (c.old_data ? %L OR c.new_data ? %L))',
            p_predicate, r.table_name, r.old_name, r.old_name)
        INTO v_found;
        IF v_found THEN
            RAISE EXCEPTION 'refused: column %.% was renamed to % after changes this rewind would undo; their images name it %, so it would stay unrestored. Rewind to a target after the rename, or rename it back first',
                r.table_name, r.old_name, r.new_name, r.old_name
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
    END LOOP;
END
$$;

-- What a rewind's predicate leaves out: tables retired from the config.
CREATE OR REPLACE FUNCTION simtrail.predicate_filters()
RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN EXISTS (SELECT 1 FROM simtrail.retired_tables)
                THEN ' AND c.table_name NOT IN (SELECT r.table_name FROM simtrail.retired_tables AS r)'
                ELSE '' END
$$;

-- Before a rewind reads the log: a new cluster is rebased, and a captured
-- table that no longer exists is named with the way out.
CREATE OR REPLACE FUNCTION simtrail.rewind_prepare()
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_gone text;
BEGIN
    PERFORM simtrail.ensure_generation();
    SELECT pg_catalog.string_agg(t.table_name, ', ' ORDER BY t.table_name) INTO v_gone
    FROM simtrail.captured_tables AS t
    WHERE pg_catalog.to_regclass(t.table_name) IS DISTINCT FROM t.relid::regclass;
    IF v_gone IS NOT NULL THEN
        RAISE EXCEPTION 'refused: captured table(s) % were dropped or replaced; run `simtrail config retire TABLE` for a dropped one, or `simtrail install`',
            v_gone USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
END
$$;

-- Take a dropped table out of the config and out of capture. Its history
-- stays in the log (and archive) for compliance; rewinds leave it alone.
CREATE OR REPLACE FUNCTION simtrail.retire_table(p_table text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_parts text[];
    v_name text;
    v_config integer;
    v_captured integer;
    v_fn text;
BEGIN
    BEGIN
        v_parts := pg_catalog.parse_ident(p_table);
    EXCEPTION WHEN invalid_parameter_value OR syntax_error THEN
        v_parts := NULL;
    END;
    IF v_parts IS NULL OR pg_catalog.cardinality(v_parts) NOT IN (1, 2) THEN
        RAISE EXCEPTION '% is not a valid table name', pg_catalog.quote_literal(p_table)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF pg_catalog.cardinality(v_parts) = 1 THEN
        v_parts := ARRAY['public', v_parts[1]];
    END IF;
    v_name := pg_catalog.format('%I.%I', v_parts[1], v_parts[2]);
    IF pg_catalog.to_regclass(v_name) IS NOT NULL THEN
        RAISE EXCEPTION '% still exists; only a dropped table can be retired (use `simtrail config disable`)',
            v_name USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT pg_catalog.count(*) INTO v_captured FROM simtrail.captured_tables AS t
    WHERE t.table_name = v_name;
    DELETE FROM public.simulation_table_config AS c
    WHERE c.id IN (SELECT r.config_id FROM simtrail.config_rows() AS r
                   WHERE r.relid IS NULL
                     AND (r.table_name = p_table OR r.table_name = v_name
                          OR (v_parts[1] = 'public' AND r.table_name = v_parts[2])));
    GET DIAGNOSTICS v_config = ROW_COUNT;
    IF v_config = 0 AND v_captured = 0 THEN
        RAISE EXCEPTION '% is neither in simulation_table_config nor captured', v_name
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR v_fn IN SELECT t.function_name FROM simtrail.captured_tables AS t WHERE t.table_name = v_name LOOP
        EXECUTE pg_catalog.format('DROP FUNCTION IF EXISTS simtrail.%I()', v_fn);
    END LOOP;
    DELETE FROM simtrail.captured_tables AS t WHERE t.table_name = v_name;
    INSERT INTO simtrail.retired_tables (table_name) VALUES (v_name) ON CONFLICT DO NOTHING;
    -- The table's own declared references and copy rules go with it; those
    -- of other tables pointing at it stay, and doctor reports them.
    DELETE FROM simtrail.refs AS r WHERE r.table_name = v_name;
    DELETE FROM simtrail.copy_rules AS r WHERE r.table_name = v_name;
    RETURN pg_catalog.jsonb_build_object(
        'table', v_name, 'config_rows_removed', v_config,
        'changes_kept', (SELECT pg_catalog.count(*) FROM simtrail.changes AS c
                         WHERE c.table_name = v_name));
END
$$;

-- What the installer and the daemon run to bring capture in line: rebase
-- first, then sync, then note the columns' names.
CREATE OR REPLACE FUNCTION simtrail.sync_all(p_apply boolean)
RETURNS TABLE (action text, table_name text, detail text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_rebased jsonb := simtrail.ensure_generation();
BEGIN
    PERFORM simtrail.reresolve_relids(false);
    IF v_rebased IS NOT NULL THEN
        action := 'rebase';
        table_name := '';
        detail := pg_catalog.format(
            'new cluster: history before change %s is generation %s',
            v_rebased ->> 'first_change_id', (v_rebased ->> 'generation')::integer - 1);
        RETURN NEXT;
    END IF;
    RETURN QUERY SELECT * FROM simtrail.sync(p_apply);
    IF p_apply THEN
        PERFORM simtrail.record_column_names();
        PERFORM simtrail.note_seen();
    END IF;
END
$$;

-- Doctor's findings about schema changes and restores.
CREATE OR REPLACE FUNCTION simtrail.schema_findings()
RETURNS TABLE (severity text, kind text, table_name text, detail text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT c.table_name, v.name FROM simtrail.config_rows() AS c
        CROSS JOIN LATERAL (SELECT CASE WHEN pg_catalog.strpos(c.table_name, '.') > 0
                                        THEN c.table_name ELSE 'public.' || c.table_name END
                            AS name) AS v
        WHERE c.relid IS NULL
          AND (EXISTS (SELECT 1 FROM simtrail.captured_tables AS t WHERE t.table_name = v.name)
               OR EXISTS (SELECT 1 FROM simtrail.changes AS x WHERE x.table_name = v.name))
    LOOP
        severity := 'error'; kind := 'dropped_table'; table_name := r.table_name;
        detail := pg_catalog.format(
            '%s was captured and has been dropped; run `simtrail config retire %s` (its history stays in the log)',
            r.name, r.table_name);
        RETURN NEXT;
    END LOOP;
    FOR r IN SELECT * FROM simtrail.renamed_columns() AS n
             WHERE EXISTS (SELECT 1 FROM simtrail.changes AS c
                           WHERE c.table_name = n.table_name
                             AND (c.old_data ? n.old_name OR c.new_data ? n.old_name)) LOOP
        severity := 'warning'; kind := 'renamed_column'; table_name := r.table_name;
        detail := pg_catalog.format(
            'column %s was renamed to %s; the log''s older images use the old name, so rewinds to targets before the rename are refused',
            r.old_name, r.new_name);
        RETURN NEXT;
    END LOOP;
    IF simtrail.cluster_changed() THEN
        severity := 'error'; kind := 'rebase'; table_name := '';
        detail := 'this database was restored into another cluster and its history is not rebased yet (rewinds, marks and the daemon do it first); run `simtrail install`';
        RETURN NEXT;
    END IF;
    FOR r IN SELECT g.* FROM simtrail.clusters AS g WHERE g.ambiguous > 0 LOOP
        severity := 'warning'; kind := 'rebase'; table_name := '';
        detail := pg_catalog.format(
            '%s change(s) captured around the move to cluster generation %s (from change %s) may belong to the cluster before it; rewinds to marks older than that may not be exact for them',
            r.ambiguous, r.generation, r.first_change_id);
        RETURN NEXT;
    END LOOP;
END
$$;
