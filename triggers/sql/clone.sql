-- Clones, subtree copies and staged copies: the entry points of the copy
-- engine (copy.sql, copy_phases.sql, copy_insert.sql), with their locks,
-- refusals and dry runs. Re-applied by every install (CREATE OR REPLACE).

-- Replica mode keeps the application's own triggers (updated_at stampers,
-- tenant fillers, identifier guards) from altering copied rows; our capture
-- triggers are ENABLE ALWAYS and still log every row. Foreign keys are
-- checked by the copy itself.
CREATE OR REPLACE FUNCTION simtrail.enter_replica_mode(p_what text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pg_catalog.set_config('session_replication_role', 'replica', true);
EXCEPTION WHEN insufficient_privilege THEN
    RAISE EXCEPTION 'refused: the role owning simtrail (%) may not set session_replication_role, which an exact % needs; a superuser must run: GRANT SET ON PARAMETER session_replication_role TO %',
        current_user, p_what, pg_catalog.quote_ident(current_user) USING ERRCODE = 'insufficient_privilege';
END
$$;

-- Take the locks of the tenants a copy reads and writes (in one order, so
-- two copies in opposite directions cannot deadlock), giving way quickly
-- to the tenants' writers; the caller retries on lock_not_available.
CREATE OR REPLACE FUNCTION simtrail.lock_tenants(p_tenants text[], p_reads_log boolean)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_lock_timeout text := pg_catalog.current_setting('lock_timeout');
    v_deadlock_timeout text := pg_catalog.current_setting('deadlock_timeout');
    v_tenant text;
BEGIN
    PERFORM pg_catalog.set_config('lock_timeout', '200ms', true);
    IF p_reads_log THEN
        PERFORM simtrail.take_lock('compaction', true);
    END IF;
    FOR v_tenant IN SELECT DISTINCT t FROM pg_catalog.unnest(p_tenants) AS t WHERE t IS NOT NULL ORDER BY 1 LOOP
        PERFORM simtrail.lock_tenant(v_tenant);
    END LOOP;
    PERFORM simtrail.restore_lock_settings(v_lock_timeout, v_deadlock_timeout);
END
$$;

-- Refuse a copy into a class that already has rows.
CREATE OR REPLACE FUNCTION simtrail.require_empty_tenant(p_tenant text)
RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t record;
    v_found boolean;
BEGIN
    FOR t IN SELECT c.table_name FROM simtrail.captured_tables AS c
             WHERE pg_catalog.to_regclass(c.table_name)::oid = c.relid ORDER BY 1 LOOP
        EXECUTE pg_catalog.format('SELECT EXISTS (SELECT 1 FROM %s AS x)',
                                  simtrail.tenant_rows_sql(t.table_name, p_tenant, false))
        INTO v_found;
        IF v_found THEN
            RAISE EXCEPTION 'refused: tenant % already has rows in %; copy into an empty class (purge it first)',
                p_tenant, t.table_name USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
    END LOOP;
END
$$;

-- Copy the rows of p_rels ({table: SQL of its source relation}) into tenant
-- p_to, recording the copy and its key map. The caller holds the locks.
-- p_checks: look for references still pointing into p_source_tenant and
-- check foreign keys after writing. A copy of a tenant's live rows needs
-- neither: every row of the tenant is copied, so each reference into it
-- is remapped, and each reference out of it was checked by the database.
-- JIT off: the map functions' row estimates (copy_map_of) make every plan
-- look expensive enough to compile, and compiling costs far more than running.
CREATE OR REPLACE FUNCTION simtrail.copy_run(
    p_kind text, p_source_tenant text, p_source jsonb, p_to text, p_rels jsonb, p_checks boolean)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET jit = off AS $$
DECLARE
    v_started timestamptz := pg_catalog.clock_timestamp();
    v_copy_id bigint;
    v_order text[];
    v_plans jsonb := '{}';
    v_plan jsonb;
    t text;
    v_sets text[];
    v_rows bigint;
    v_retried integer;
    v_copied bigint;
    v_remapped bigint;
    v_tables jsonb := '{}';
    v_generated jsonb;
    v_phases jsonb := '{}';
    v_graph jsonb;
    v_mark timestamptz := pg_catalog.clock_timestamp();
BEGIN
    DELETE FROM simtrail.copy_map AS m WHERE m.call_id = pg_catalog.pg_current_xact_id();
    INSERT INTO simtrail.copies (kind, source_tenant, target_tenant, source)
    VALUES (p_kind, p_source_tenant, p_to, coalesce(p_source, '{}')) RETURNING id INTO v_copy_id;

    SELECT pg_catalog.array_agg(k.k ORDER BY coalesce(d.depth, 0), k.k) INTO v_order
    FROM pg_catalog.jsonb_object_keys(p_rels) AS k(k)
    LEFT JOIN simtrail.reference_depths() AS d ON d.table_name = k.k;
    SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(g)), '[]') INTO v_graph
    FROM simtrail.references() AS g;
    FOREACH t IN ARRAY coalesce(v_order, ARRAY[]::text[]) LOOP
        v_plans := v_plans || pg_catalog.jsonb_build_object(t, simtrail.copy_table_plan(t, v_graph));
    END LOOP;

    FOREACH t IN ARRAY coalesce(v_order, ARRAY[]::text[]) LOOP
        v_plan := v_plans -> t;
        v_rows := simtrail.copy_phase_keys(v_plan, p_rels ->> t, p_to);
        v_retried := simtrail.copy_phase_unique(v_plan, p_rels ->> t, p_to);
        -- The column sets other tables' references point at, other than the key.
        SELECT pg_catalog.array_agg(DISTINCT r ->> 'cols') INTO v_sets
        FROM pg_catalog.jsonb_each(v_plans) AS p(name, plan)
        CROSS JOIN LATERAL pg_catalog.jsonb_array_elements(p.plan -> 'refs') AS r
        WHERE r ->> 'ref_table' = t
          AND r -> 'ref_columns' <> v_plan -> 'pk';
        PERFORM simtrail.copy_phase_maps(v_plan, p_rels ->> t, p_to, v_sets);
        SELECT coalesce(pg_catalog.jsonb_object_agg(e ->> 'name', v_rows), '{}') INTO v_generated
        FROM pg_catalog.jsonb_array_elements(v_plan -> 'columns') AS e WHERE e ->> 'how' = 'gen';
        v_tables := v_tables || pg_catalog.jsonb_build_object(t, pg_catalog.jsonb_build_object(
            'rows', v_rows, 'values_generated', v_generated, 'collisions_retried', v_retried));
    END LOOP;

    v_phases := v_phases || pg_catalog.jsonb_build_object('plan_and_keys_ms', pg_catalog.round(
        EXTRACT(epoch FROM pg_catalog.clock_timestamp() - v_mark) * 1000, 1));
    v_mark := pg_catalog.clock_timestamp();
    IF p_checks AND p_source_tenant IS NOT NULL AND p_source_tenant <> p_to THEN
        FOREACH t IN ARRAY coalesce(v_order, ARRAY[]::text[]) LOOP
            PERFORM simtrail.copy_check_source(v_plans -> t, p_rels ->> t, p_source_tenant);
        END LOOP;
    END IF;

    v_phases := v_phases || pg_catalog.jsonb_build_object('source_check_ms', pg_catalog.round(
        EXTRACT(epoch FROM pg_catalog.clock_timestamp() - v_mark) * 1000, 1));
    v_mark := pg_catalog.clock_timestamp();
    PERFORM simtrail.enter_replica_mode('copy');
    FOREACH t IN ARRAY coalesce(v_order, ARRAY[]::text[]) LOOP
        SELECT i.copied, i.remapped INTO v_copied, v_remapped
        FROM simtrail.copy_phase_insert(v_plans -> t, p_rels ->> t, p_to) AS i;
        v_tables := pg_catalog.jsonb_set(v_tables, ARRAY[t, 'references_remapped'],
                                         pg_catalog.to_jsonb(v_remapped));
    END LOOP;
    PERFORM pg_catalog.set_config('session_replication_role', 'origin', true);
    v_phases := v_phases || pg_catalog.jsonb_build_object('insert_ms', pg_catalog.round(
        EXTRACT(epoch FROM pg_catalog.clock_timestamp() - v_mark) * 1000, 1));
    v_mark := pg_catalog.clock_timestamp();

    IF p_checks THEN
        FOREACH t IN ARRAY coalesce(v_order, ARRAY[]::text[]) LOOP
            PERFORM simtrail.copy_check_foreign_keys(v_plans -> t);
        END LOOP;
    END IF;

    INSERT INTO simtrail.copy_keys (copy_id, table_name, old_key, new_key)
    SELECT v_copy_id, m.table_name, m.old_key, m.new_key FROM simtrail.copy_map AS m
    WHERE m.call_id = pg_catalog.pg_current_xact_id() AND m.new_key IS NOT NULL;
    DELETE FROM simtrail.copy_map AS m WHERE m.call_id = pg_catalog.pg_current_xact_id();
    v_phases := v_phases || pg_catalog.jsonb_build_object('fk_check_and_record_ms', pg_catalog.round(
        EXTRACT(epoch FROM pg_catalog.clock_timestamp() - v_mark) * 1000, 1));
    v_mark := pg_catalog.clock_timestamp();

    -- Tables with nothing to copy say nothing.
    SELECT coalesce(pg_catalog.jsonb_object_agg(e.key, e.value), '{}') INTO v_tables
    FROM pg_catalog.jsonb_each(v_tables) AS e WHERE (e.value ->> 'rows')::bigint > 0;
    RETURN pg_catalog.jsonb_build_object(
        'copy_id', v_copy_id, 'kind', p_kind, 'from', p_source_tenant, 'to', p_to,
        'source', coalesce(p_source, '{}'), 'tables', v_tables,
        'totals', (SELECT pg_catalog.jsonb_build_object(
                       'rows', coalesce(pg_catalog.sum((e.value ->> 'rows')::bigint), 0),
                       'references_remapped',
                       coalesce(pg_catalog.sum((e.value ->> 'references_remapped')::bigint), 0))
                   FROM pg_catalog.jsonb_each(v_tables) AS e),
        'phases', v_phases,
        'copy_ms', pg_catalog.round(EXTRACT(epoch FROM pg_catalog.clock_timestamp() - v_started) * 1000, 1));
END
$$;

-- Finish a copy's report: record it, take the mark, and with p_dry_run
-- undo everything by raising the dry-run sentinel (caught by the caller's
-- block, which keeps the report).
CREATE OR REPLACE FUNCTION simtrail.copy_finish(p_report jsonb, p_mark text, p_dry_run boolean)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_report jsonb := p_report;
BEGIN
    IF p_mark IS NOT NULL THEN
        v_report := v_report || pg_catalog.jsonb_build_object('mark', simtrail.mark_snapshot(
            p_report ->> 'to', p_mark, true, simtrail.snapshot_with_self()) ->> 'name');
    END IF;
    UPDATE simtrail.copies SET report = v_report WHERE id = (p_report ->> 'copy_id')::bigint;
    RETURN v_report || pg_catalog.jsonb_build_object('dry_run', p_dry_run);
END
$$;

-- The dry-run sentinel: raised at the end of a dry run inside a block of
-- the entry point, so every write is undone and the report survives.
CREATE OR REPLACE FUNCTION simtrail.undo_dry_run()
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'simtrail dry run: undone' USING ERRCODE = 'SIMDR';
END
$$;

-- Launch a class: copy every captured row of tenant p_from (now, or as it
-- was at p_at) into the empty tenant p_to, then mark it (p_mark, default
-- `launch`) so a reset brings the class back to its launch state.
CREATE OR REPLACE FUNCTION simtrail.clone_tenant(
    p_from text, p_to text, p_at text, p_dry_run boolean, p_mark text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET extra_float_digits = 1 AS $$
DECLARE
    v_from text := simtrail.known_tenant(p_from);
    v_to text := simtrail.markable_tenant(p_to);
    v_resolved jsonb;
    v_rels jsonb;
    v_report jsonb;
    v_attempt integer := 0;
BEGIN
    IF v_from = v_to THEN
        RAISE EXCEPTION 'refused: a tenant cannot be cloned into itself' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_at IS NOT NULL AND pg_catalog.btrim(p_at) = '' THEN
        RAISE EXCEPTION 'an empty target: give mark:NAME, change:ID or an ISO-8601 time, or none for now'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    LOOP
        v_attempt := v_attempt + 1;
        BEGIN
            PERFORM simtrail.lock_tenants(ARRAY[v_from, v_to], p_at IS NOT NULL);
            BEGIN
                PERFORM simtrail.require_empty_tenant(v_to);
                IF p_at IS NOT NULL THEN
                    PERFORM simtrail.rewind_prepare();
                    v_resolved := simtrail.stage_state_at(v_from, p_at);
                    v_resolved := v_resolved - 'predicate';
                END IF;
                SELECT pg_catalog.jsonb_object_agg(c.table_name,
                           simtrail.tenant_rows_sql(c.table_name, v_from, p_at IS NOT NULL))
                  INTO v_rels
                FROM simtrail.captured_tables AS c
                WHERE pg_catalog.to_regclass(c.table_name)::oid = c.relid;
                v_report := simtrail.copy_run('clone', v_from,
                    pg_catalog.jsonb_build_object('at', p_at, 'resolved', v_resolved), v_to,
                    coalesce(v_rels, '{}'), p_at IS NOT NULL);
                PERFORM simtrail.unstage_state();
                v_report := simtrail.copy_finish(v_report, coalesce(p_mark, 'launch'), p_dry_run);
                IF p_dry_run THEN
                    PERFORM simtrail.undo_dry_run();
                END IF;
            EXCEPTION WHEN SQLSTATE 'SIMDR' THEN
                v_report := v_report || '{"copy_id": null}';
            END;
            EXIT;
        EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
            IF v_attempt >= 10 THEN
                RAISE EXCEPTION 'tenant % or % stayed busy through % attempts; try again', v_from, v_to, v_attempt
                    USING ERRCODE = 'lock_not_available';
            END IF;
            PERFORM pg_catalog.pg_sleep(LEAST(0.05 * 2 ^ v_attempt, 2.0) * (0.5 + pg_catalog.random()));
        END;
    END LOOP;
    RETURN v_report || pg_catalog.jsonb_build_object('attempts', v_attempt);
END
$$;

CREATE OR REPLACE FUNCTION simtrail.clone_tenant(
    p_from text, p_to text, p_at text DEFAULT NULL, p_dry_run boolean DEFAULT false)
RETURNS jsonb
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT simtrail.clone_tenant(p_from, p_to, p_at, p_dry_run, NULL)
$$;
