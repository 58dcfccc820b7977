-- Capture: the per-transaction actor record, the generated per-table capture
-- functions, and the fix-up for rows whose parent vanished in the same cascade.
-- Re-applied by every install (CREATE OR REPLACE), after the versioned files.

-- Called by a capture function at a transaction's first captured statement.
-- The GUC remembers that this transaction is registered, so later statements
-- skip straight to their INSERT.
CREATE OR REPLACE FUNCTION simtrail.begin_xact(p_xid xid8)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
BEGIN
    INSERT INTO simtrail.transactions (xact_id, first_change_id, started_at, actor)
    VALUES (p_xid, pg_catalog.nextval('simtrail.change_id_seq'), pg_catalog.now(),
            simtrail.current_actor())
    ON CONFLICT (xact_id) DO NOTHING;
    PERFORM pg_catalog.set_config('simtrail.xact', p_xid::text, true);
END
$$;

-- Who is acting: JWT claims PostgREST sets, the simtrail.actor setting, the
-- session. Used for each captured transaction and for marks.
CREATE OR REPLACE FUNCTION simtrail.current_actor()
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    v_raw text := nullif(pg_catalog.current_setting('request.jwt.claims', true), '');
    v_claims jsonb;
BEGIN
    IF v_raw IS NOT NULL THEN
        BEGIN
            v_claims := v_raw::jsonb;
        EXCEPTION WHEN invalid_text_representation THEN
            -- A malformed claim must never fail the application's write.
            v_claims := pg_catalog.jsonb_build_object('unparsed', v_raw);
        END;
    END IF;
    RETURN pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
        'sub', v_claims ->> 'sub',
        'role', v_claims ->> 'role',
        'email', v_claims ->> 'email',
        'claims_unparsed', v_claims ->> 'unparsed',
        'actor', nullif(pg_catalog.current_setting('simtrail.actor', true), ''),
        'session_user', session_user::text,
        'application_name', nullif(pg_catalog.current_setting('application_name', true), ''),
        'client_addr', pg_catalog.host(pg_catalog.inet_client_addr())));
END
$$;

-- A child whose parent row was deleted by the same statement (an ON DELETE
-- CASCADE or SET NULL) cannot find its tenant through live rows. PostgreSQL
-- runs the parent's AFTER STATEMENT trigger before the cascaded children's, so
-- the parent's old image, with its tenant, is already in this transaction's
-- log: take the tenant from there, one hop up the config's tenant path.
CREATE OR REPLACE FUNCTION simtrail.resolve_unattributed(p_xid xid8, p_table text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    v_hop jsonb;
    v_first bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM simtrail.changes AS c
                   WHERE c.xact_id = p_xid AND c.tenant_id IS NULL AND c.table_name = p_table) THEN
        RETURN;
    END IF;
    SELECT t.tenant_path -> 'hops' -> 0 INTO v_hop
    FROM simtrail.captured_tables AS t WHERE t.table_name = p_table;
    SELECT x.first_change_id INTO v_first FROM simtrail.transactions AS x WHERE x.xact_id = p_xid;
    IF v_hop IS NULL OR v_first IS NULL THEN
        RETURN;
    END IF;

    UPDATE simtrail.changes AS c
       SET tenant_id = p.tenant_id,
           -- The row lost its parent link: it left the tenant without entering another.
           moved = CASE WHEN c.operation = 'UPDATE' AND c.moved IS NULL
                         AND c.new_data -> (v_hop ->> 'column') = 'null'::jsonb
                        THEN 'out' ELSE c.moved END
      FROM (SELECT DISTINCT ON (1) l.old_data -> (v_hop ->> 'parent_column') AS parent_key,
                   l.tenant_id
              FROM simtrail.changes AS l
             WHERE l.id >= v_first AND l.xact_id = p_xid
               AND l.table_name = v_hop ->> 'parent'
               AND l.tenant_id IS NOT NULL AND l.old_data IS NOT NULL
               -- Only a parent row that is gone (deleted, or its key changed).
               -- A parent that moved to no tenant is still there, and its
               -- children really have no tenant now.
               AND (l.operation IN ('DELETE', 'TRUNCATE') OR l.old_pk IS NOT NULL)
             ORDER BY 1, l.id DESC) AS p
     WHERE c.xact_id = p_xid AND c.tenant_id IS NULL AND c.table_name = p_table
       AND p.parent_key = (CASE WHEN c.moved = 'in' THEN c.new_data
                                ELSE coalesce(c.old_data, c.new_data) END) -> (v_hop ->> 'column');
END
$$;

-- Enabled tables whose tenant path starts by stepping up to p_relid.
CREATE OR REPLACE FUNCTION simtrail.path_children(p_relid regclass)
RETURNS TABLE (relid regclass, hop jsonb, pk_columns text[])
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    r record;
    v_path jsonb;
BEGIN
    FOR r IN
        SELECT DISTINCT c.relid FROM simtrail.config_rows() AS c
        WHERE c.enabled AND c.relid IS NOT NULL AND c.relid <> p_relid
    LOOP
        BEGIN
            v_path := simtrail.tenant_path(r.relid);
        EXCEPTION WHEN invalid_parameter_value THEN
            CONTINUE;  -- a broken row is doctor's business, not capture's
        END;
        IF v_path -> 'hops' -> 0 ->> 'parent' = p_relid::text THEN
            relid := r.relid;
            hop := v_path -> 'hops' -> 0;
            pk_columns := simtrail.pk_columns(r.relid);
            RETURN NEXT;
        END IF;
    END LOOP;
END
$$;

-- When a row changes tenant, the rows that reach their tenant through it move
-- with it although nothing wrote to them. Log each as leaving the old tenant
-- and entering the new one, then do the same for their own descendants.
-- p_moves: [{"img": new image of the moved parent, "old_tenant", "new_tenant"}].
CREATE OR REPLACE FUNCTION simtrail.log_descendant_moves(p_xid xid8, p_parent text, p_moves jsonb)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    r record;
    v_pk text;
    v_next jsonb;
BEGIN
    FOR r IN
        SELECT t.relid, t.table_name, t.pk_columns, t.tenant_path -> 'hops' -> 0 AS hop
        FROM simtrail.captured_tables AS t
        WHERE t.tenant_path -> 'hops' -> 0 ->> 'parent' = p_parent
    LOOP
        SELECT pg_catalog.string_agg(pg_catalog.format('%L, c.%I', k, k), ', ')
          INTO v_pk FROM pg_catalog.unnest(r.pk_columns) AS k;
        EXECUTE pg_catalog.format($q$
            WITH moves AS (
                SELECT e -> 'img' -> %1$L AS parent_key, e ->> 'old_tenant' AS old_tenant,
                       e ->> 'new_tenant' AS new_tenant
                FROM pg_catalog.jsonb_array_elements($1) AS e
            ), moved AS (
                SELECT m.old_tenant, m.new_tenant, pg_catalog.to_jsonb(c) AS img,
                       pg_catalog.jsonb_build_object(%2$s) AS pk
                FROM %3$s AS c JOIN moves AS m ON pg_catalog.to_jsonb(c.%4$I) = m.parent_key
            ), logged AS (
                INSERT INTO simtrail.changes
                    (tenant_id, table_name, operation, row_pk, old_data, new_data, xact_id, moved)
                SELECT s.tenant, %5$L, 'UPDATE', m.pk, m.img, m.img, $2, s.moved
                FROM moved AS m
                CROSS JOIN LATERAL (VALUES (m.old_tenant, 'out'), (m.new_tenant, 'in'))
                    AS s (tenant, moved)
                WHERE s.tenant IS NOT NULL
            )
            SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                       'img', m.img, 'old_tenant', m.old_tenant, 'new_tenant', m.new_tenant))
            FROM moved AS m
            $q$, r.hop ->> 'parent_column', v_pk, r.relid::regclass, r.hop ->> 'column',
            r.table_name)
        INTO v_next USING p_moves, p_xid;
        IF v_next IS NOT NULL THEN
            PERFORM simtrail.log_descendant_moves(p_xid, r.table_name, v_next);
        END IF;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION simtrail.capture_function_name(p_relid regclass)
RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
    SELECT 'capture_' || pg_catalog.left(c.relname::text, 40) || '_'
           || pg_catalog.left(pg_catalog.md5(p_relid::text), 8)
    FROM pg_catalog.pg_class AS c WHERE c.oid = p_relid
$$;

-- The statements that attach capture to one table: its generated function and
-- its four triggers. Everything is derived from the catalog and the config, so
-- rendering twice gives the same text, and its hash tells when it is outdated.
CREATE OR REPLACE FUNCTION simtrail.render_capture(p_relid regclass)
RETURNS TABLE (
    function_name text,
    pk_columns text[],
    tenant_path jsonb,
    statements text[],
    trigger_hash text
)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    v_name text := p_relid::text;
    v_hops jsonb;
    v_is_chain boolean;
    v_is_parent boolean;
    v_fn text;
    v_update text;
    v_body text;
    v_rows_new text;
    v_rows_old text;
    v_rows_live text;

BEGIN
    function_name := simtrail.capture_function_name(p_relid);
    pk_columns := simtrail.pk_columns(p_relid);
    IF pk_columns IS NULL THEN
        RAISE EXCEPTION '% has no primary key', p_relid USING ERRCODE = 'invalid_parameter_value';
    END IF;
    tenant_path := simtrail.tenant_path(p_relid);
    v_hops := tenant_path -> 'hops';
    v_is_chain := pg_catalog.jsonb_array_length(v_hops) > 0;
    v_is_parent := EXISTS (SELECT 1 FROM simtrail.path_children(p_relid));

    -- One SELECT list per source of rows; each yields tenant, key presence,
    -- image and primary key for the row expression `(x.rec)`.
    v_rows_new := simtrail.render_row_source('simtrail_new', pk_columns, tenant_path);
    v_rows_old := simtrail.render_row_source('simtrail_old', pk_columns, tenant_path);
    v_rows_live := simtrail.render_row_source(v_name, pk_columns, tenant_path);

    v_update := pg_catalog.format($u$WITH pairs AS (
                SELECT o.tenant AS old_tenant, n.tenant AS new_tenant, o.keyed AS old_keyed,
                       n.keyed AS new_keyed, o.img AS old_img, n.img AS new_img, n.pk,
                       CASE WHEN o.pk <> n.pk THEN o.pk END AS old_pk
                FROM (%1$s) AS o
                JOIN (%2$s) AS n ON n.rn = o.rn
            )%3$s
            INSERT INTO simtrail.changes
                (tenant_id, table_name, operation, row_pk, old_pk, old_data, new_data, xact_id,
                 moved)
            SELECT s.tenant, %4$L, 'UPDATE', p.pk, p.old_pk, p.old_img, p.new_img, __xid__, s.moved
            FROM pairs AS p
            CROSS JOIN LATERAL (
                SELECT p.old_tenant, NULL::text WHERE p.old_tenant IS NOT DISTINCT FROM p.new_tenant
                UNION ALL
                SELECT p.old_tenant, 'out'
                WHERE p.old_tenant IS DISTINCT FROM p.new_tenant AND p.old_keyed
                UNION ALL
                SELECT p.new_tenant, 'in'
                WHERE p.old_tenant IS DISTINCT FROM p.new_tenant AND p.new_keyed
            ) AS s (tenant, moved)%5$s$u$,
        v_rows_old, v_rows_new,
        CASE WHEN v_is_parent THEN ', logged AS (' ELSE '' END,
        v_name,
        CASE WHEN v_is_parent THEN $r$
            )
            SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                       'img', p.new_img, 'old_tenant', p.old_tenant, 'new_tenant', p.new_tenant))
                   FILTER (WHERE p.old_tenant IS DISTINCT FROM p.new_tenant)
            FROM pairs AS p$r$ ELSE '' END);

    v_body := pg_catalog.format($f$
-- Generated by simtrail for %1$s. Do not edit: `simtrail install` rewrites it.
DECLARE
    v_xid xid8 := pg_catalog.pg_current_xact_id();
    v_moved jsonb;
BEGIN
    IF pg_catalog.current_setting('simtrail.xact', true) IS DISTINCT FROM v_xid::text THEN
        PERFORM simtrail.begin_xact(v_xid);
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO simtrail.changes (tenant_id, table_name, operation, row_pk, new_data, xact_id)
        SELECT n.tenant, %2$L, 'INSERT', n.pk, n.img, v_xid FROM (%3$s) AS n;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO simtrail.changes (tenant_id, table_name, operation, row_pk, old_data, xact_id)
        SELECT o.tenant, %2$L, 'DELETE', o.pk, o.img, v_xid FROM (%4$s) AS o;
    ELSIF TG_OP = 'TRUNCATE' THEN
        INSERT INTO simtrail.changes (tenant_id, table_name, operation, row_pk, old_data, xact_id)
        SELECT o.tenant, %2$L, 'TRUNCATE', o.pk, o.img, v_xid FROM (%5$s) AS o;
    ELSE
        -- A plan cached while statements touched one row pairs old and new
        -- rows with a nested loop, quadratic for a big UPDATE on a pooled
        -- connection: a large update gets a plan of its own.
        IF (SELECT pg_catalog.count(*) FROM simtrail_new) > 64 THEN
            EXECUTE %9$L%10$s USING v_xid;
        ELSE
            %11$s%10$s;
        END IF;%8$s
    END IF;%6$s
    RETURN NULL;
END
$f$,
        v_name, v_name, v_rows_new, v_rows_old, v_rows_live,
        CASE WHEN v_is_chain THEN pg_catalog.format($r$
    IF TG_OP <> 'INSERT' THEN
        PERFORM simtrail.resolve_unattributed(v_xid, %L);
    END IF;$r$, v_name) ELSE '' END,
        -- Only tables that others reach their tenant through pay for this:
        -- the moved rows are collected so their descendants can follow.
        NULL,
        CASE WHEN v_is_parent THEN pg_catalog.format($r$
            IF v_moved IS NOT NULL THEN
                PERFORM simtrail.log_descendant_moves(v_xid, %L, v_moved);
            END IF;$r$, v_name) ELSE '' END,
        pg_catalog.replace(v_update, '__xid__', '$1'),
        CASE WHEN v_is_parent THEN ' INTO v_moved' ELSE '' END,
        pg_catalog.replace(v_update, '__xid__', 'v_xid'));

    v_fn := pg_catalog.format('simtrail.%I()', function_name);
    statements := ARRAY[
        pg_catalog.format(
            'CREATE OR REPLACE FUNCTION %s RETURNS trigger LANGUAGE plpgsql '
            -- The capture statements are simple; JIT compiling them for a
            -- large transition table costs far more than it saves.
            'SECURITY DEFINER SET search_path = %L SET jit = off AS %L', v_fn, '', v_body),
        pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', v_fn),
        pg_catalog.format(
            'CREATE TRIGGER simtrail_capture_insert AFTER INSERT ON %s '
            'REFERENCING NEW TABLE AS simtrail_new FOR EACH STATEMENT EXECUTE FUNCTION %s',
            p_relid, v_fn),
        pg_catalog.format(
            'CREATE TRIGGER simtrail_capture_update AFTER UPDATE ON %s '
            'REFERENCING OLD TABLE AS simtrail_old NEW TABLE AS simtrail_new '
            'FOR EACH STATEMENT EXECUTE FUNCTION %s', p_relid, v_fn),
        pg_catalog.format(
            'CREATE TRIGGER simtrail_capture_delete AFTER DELETE ON %s '
            'REFERENCING OLD TABLE AS simtrail_old FOR EACH STATEMENT EXECUTE FUNCTION %s',
            p_relid, v_fn),
        pg_catalog.format(
            'CREATE TRIGGER simtrail_capture_truncate BEFORE TRUNCATE ON %s '
            'FOR EACH STATEMENT EXECUTE FUNCTION %s', p_relid, v_fn),
        -- ALWAYS: a session in replica mode (bulk loads, some restore tools)
        -- must not slip past capture.
        pg_catalog.format(
            'ALTER TABLE %s ENABLE ALWAYS TRIGGER simtrail_capture_insert, '
            'ENABLE ALWAYS TRIGGER simtrail_capture_update, '
            'ENABLE ALWAYS TRIGGER simtrail_capture_delete, '
            'ENABLE ALWAYS TRIGGER simtrail_capture_truncate', p_relid)
    ];
    trigger_hash := pg_catalog.md5(pg_catalog.array_to_string(statements, E';\n'));
    RETURN NEXT;
END
$$;

-- A subquery over one source of rows (a transition table, or the live table
-- for TRUNCATE) yielding rn, tenant, keyed, img and pk. `rn` numbers rows in
-- the source's own order before any join, which pairs OLD and NEW rows of an
-- UPDATE even when the primary key changed.
CREATE OR REPLACE FUNCTION simtrail.render_row_source(
    p_source text, p_pk text[], p_path jsonb)
RETURNS text
LANGUAGE plpgsql IMMUTABLE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    v_lookup jsonb := simtrail.render_tenant_lookup(p_path, '(x.rec)');
    v_pk text;
BEGIN
    SELECT pg_catalog.string_agg(pg_catalog.format('%L, (x.rec).%I', c, c), ', ' ORDER BY o)
      INTO v_pk
      FROM pg_catalog.unnest(p_pk) WITH ORDINALITY AS u(c, o);
    -- Reading a row's tenant also takes that tenant's lock in shared mode, so
    -- a rewind of the tenant (which takes it exclusively) and its writers take
    -- turns while other tenants never wait. The key must match
    -- simtrail.tenant_lock_key(); it is spelled out because a SECURITY DEFINER
    -- function call per row would cost far more than the hash.
    RETURN pg_catalog.format(
        'SELECT x.rn, CASE WHEN pg_catalog.pg_advisory_xact_lock_shared(pg_catalog.hashtextextended('
        '''simtrail tenant '' || %1$s, 0)) IS NULL THEN NULL ELSE %1$s END AS tenant, '
        '%2$s IS NOT NULL AS keyed, '
        'pg_catalog.to_jsonb(x.rec) AS img, pg_catalog.jsonb_build_object(%3$s) AS pk '
        'FROM (SELECT pg_catalog.row_number() OVER () AS rn, r AS rec FROM %4$s AS r) AS x%5$s',
        v_lookup ->> 'tenant', v_lookup ->> 'key', v_pk, p_source, v_lookup ->> 'joins');
END
$$;

-- SQL fragments that find the tenant of the row expression p_row by its
-- tenant path: {"joins": " LEFT JOIN … AS p1 …", "tenant": "(p1.tenant_id)::text",
-- "key": "<p_row>.<first column of the path>"}. Parents are aliased p1, p2, …
CREATE OR REPLACE FUNCTION simtrail.render_tenant_lookup(p_path jsonb, p_row text)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    v_hops jsonb := p_path -> 'hops';
    v_joins text := '';
    v_prev text := p_row;
    v_alias text;
    i integer;
BEGIN
    FOR i IN 0 .. pg_catalog.jsonb_array_length(v_hops) - 1 LOOP
        v_alias := 'p' || (i + 1);
        v_joins := v_joins || pg_catalog.format(
            ' LEFT JOIN %s AS %I ON %I.%I = %s.%I',
            (v_hops -> i ->> 'parent')::regclass, v_alias, v_alias,
            v_hops -> i ->> 'parent_column', v_prev, v_hops -> i ->> 'column');
        v_prev := v_alias;
    END LOOP;
    RETURN pg_catalog.jsonb_build_object(
        'joins', v_joins,
        'tenant', pg_catalog.format('(%s.%I)::text', v_prev, p_path ->> 'tenant_column'),
        'key', pg_catalog.format('%s.%I', p_row,
                   coalesce(v_hops -> 0 ->> 'column', p_path ->> 'tenant_column')));
END
$$;

-- What the four capture triggers on a table look like right now.
CREATE OR REPLACE FUNCTION simtrail.trigger_state(p_relid regclass)
RETURNS TABLE (present integer, always_enabled integer, hashes text[])
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
    SELECT pg_catalog.count(*)::integer,
           (pg_catalog.count(*) FILTER (WHERE t.tgenabled = 'A'))::integer,
           pg_catalog.array_agg(DISTINCT pg_catalog.obj_description(t.oid, 'pg_trigger'))
    FROM pg_catalog.pg_trigger AS t
    WHERE t.tgrelid = p_relid
      AND t.tgname IN ('simtrail_capture_insert', 'simtrail_capture_update',
                       'simtrail_capture_delete', 'simtrail_capture_truncate')
$$;

CREATE OR REPLACE FUNCTION simtrail.attach(p_relid regclass)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    r record;
    v_stmt text;
    v_trigger text;
BEGIN
    SELECT * INTO r FROM simtrail.render_capture(p_relid);
    PERFORM simtrail.drop_triggers(p_relid);
    FOREACH v_stmt IN ARRAY r.statements LOOP
        EXECUTE v_stmt;
    END LOOP;
    FOREACH v_trigger IN ARRAY ARRAY['simtrail_capture_insert', 'simtrail_capture_update',
                                     'simtrail_capture_delete', 'simtrail_capture_truncate'] LOOP
        EXECUTE pg_catalog.format('COMMENT ON TRIGGER %I ON %s IS %L',
                                  v_trigger, p_relid, 'simtrail ' || r.trigger_hash);
    END LOOP;
    INSERT INTO simtrail.captured_tables
        (relid, table_name, function_name, pk_columns, tenant_path, trigger_hash)
    VALUES (p_relid, p_relid::text, r.function_name, r.pk_columns, r.tenant_path, r.trigger_hash)
    ON CONFLICT (relid) DO UPDATE
       SET table_name = EXCLUDED.table_name, function_name = EXCLUDED.function_name,
           pk_columns = EXCLUDED.pk_columns, tenant_path = EXCLUDED.tenant_path,
           trigger_hash = EXCLUDED.trigger_hash, attached_at = pg_catalog.now();
END
$$;

CREATE OR REPLACE FUNCTION simtrail.drop_triggers(p_relid regclass)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    v_trigger text;
BEGIN
    FOR v_trigger IN
        SELECT t.tgname FROM pg_catalog.pg_trigger AS t
        WHERE t.tgrelid = p_relid AND t.tgname LIKE 'simtrail\_capture\_%' AND NOT t.tgisinternal
    LOOP
        EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', v_trigger, p_relid);
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION simtrail.detach(p_relid oid)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    v_fn text;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_class AS c WHERE c.oid = p_relid) THEN
        PERFORM simtrail.drop_triggers(p_relid::regclass);
    END IF;
    SELECT t.function_name INTO v_fn FROM simtrail.captured_tables AS t WHERE t.relid = p_relid;
    IF v_fn IS NOT NULL THEN
        EXECUTE pg_catalog.format('DROP FUNCTION IF EXISTS simtrail.%I()', v_fn);
    END IF;
    DELETE FROM simtrail.captured_tables AS t WHERE t.relid = p_relid;
END
$$;

-- Bring the triggers in line with the config: attach to enabled tables that
-- lack a current trigger, detach from tables that are no longer enabled.
-- Refuses, changing nothing, while any enabled config row has a problem.
-- With p_apply false it only reports what it would do.
CREATE OR REPLACE FUNCTION simtrail.sync(p_apply boolean)
RETURNS TABLE (action text, table_name text, detail text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    v_problem record;
    v_count integer;
    r record;
    v_state record;
    v_hash text;
BEGIN
    -- The installer and the daemon may both sync; one at a time.
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('simtrail.sync'));

    SELECT pg_catalog.count(*) INTO v_count FROM simtrail.config_problems();
    IF v_count > 0 THEN
        SELECT * INTO v_problem FROM simtrail.config_problems() LIMIT 1;
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format('simulation_table_config row %s: %s%s',
                v_problem.table_name, v_problem.problem,
                CASE WHEN v_count > 1 THEN pg_catalog.format(' (and %s more)', v_count - 1)
                     ELSE '' END);
    END IF;

    FOR r IN
        SELECT DISTINCT c.relid, c.relid::text AS name FROM simtrail.config_rows() AS c
        WHERE c.enabled AND c.relid IS NOT NULL ORDER BY 2
    LOOP
        SELECT s.trigger_hash INTO v_hash FROM simtrail.render_capture(r.relid) AS s;
        SELECT * INTO v_state FROM simtrail.trigger_state(r.relid);
        table_name := r.relid::text;
        IF v_state.present = 0 THEN
            action := 'attach';
            detail := 'no capture trigger yet';
        ELSIF v_state.present < 4 OR v_state.always_enabled < 4
              OR v_state.hashes IS DISTINCT FROM ARRAY['simtrail ' || v_hash]
              OR NOT EXISTS (SELECT 1 FROM simtrail.captured_tables AS t
                             WHERE t.relid = r.relid AND t.trigger_hash = v_hash) THEN
            action := 'refresh';
            detail := 'capture trigger is missing, disabled or outdated';
        ELSE
            CONTINUE;
        END IF;
        IF p_apply THEN
            PERFORM simtrail.attach(r.relid);
        END IF;
        RETURN NEXT;
    END LOOP;

    FOR r IN
        SELECT t.relid, t.table_name AS name FROM simtrail.captured_tables AS t
        WHERE t.relid NOT IN (SELECT c.relid FROM simtrail.config_rows() AS c
                              WHERE c.enabled AND c.relid IS NOT NULL)
        UNION
        SELECT DISTINCT g.tgrelid, g.tgrelid::regclass::text FROM pg_catalog.pg_trigger AS g
        WHERE g.tgname LIKE 'simtrail\_capture\_%' AND NOT g.tgisinternal
          AND g.tgrelid NOT IN (SELECT c.relid FROM simtrail.config_rows() AS c
                                WHERE c.enabled AND c.relid IS NOT NULL)
        ORDER BY 2
    LOOP
        action := 'detach';
        table_name := r.name;
        detail := 'no longer enabled in simulation_table_config';
        IF p_apply THEN
            PERFORM simtrail.detach(r.relid);
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;

-- Everything `simtrail doctor` reports, one row per finding.
CREATE OR REPLACE FUNCTION simtrail.doctor()
RETURNS TABLE (severity text, kind text, table_name text, detail text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    r record;
    v_state record;
    v_hash text;
    v_bad text[];
BEGIN
    SELECT pg_catalog.array_agg(p.table_name) INTO v_bad FROM simtrail.config_problems() AS p;
    FOR r IN SELECT * FROM simtrail.config_problems() LOOP
        severity := 'error'; kind := 'config'; table_name := r.table_name; detail := r.problem;
        RETURN NEXT;
    END LOOP;

    FOR r IN SELECT * FROM simtrail.discover() AS d WHERE NOT d.configured LOOP
        severity := 'error'; kind := 'uncovered'; table_name := r.table_name;
        detail := pg_catalog.format('looks tenant-scoped (%s) but is not in simulation_table_config',
                                    r.reaches_tenant);
        RETURN NEXT;
    END LOOP;

    FOR r IN
        SELECT DISTINCT c.relid, c.table_name FROM simtrail.config_rows() AS c
        WHERE c.enabled AND c.relid IS NOT NULL
          AND c.table_name <> ALL (coalesce(v_bad, ARRAY[]::text[]))
    LOOP
        SELECT s.trigger_hash INTO v_hash FROM simtrail.render_capture(r.relid) AS s;
        SELECT * INTO v_state FROM simtrail.trigger_state(r.relid);
        severity := 'error'; table_name := r.relid::text;
        IF v_state.present = 0 THEN
            kind := 'missing_trigger'; detail := 'enabled in the config but not captured';
        ELSIF v_state.present < 4 THEN
            kind := 'missing_trigger';
            detail := pg_catalog.format('only %s of 4 capture triggers present', v_state.present);
        ELSIF v_state.always_enabled < 4 THEN
            kind := 'disabled_trigger'; detail := 'a capture trigger is disabled';
        ELSIF v_state.hashes IS DISTINCT FROM ARRAY['simtrail ' || v_hash] THEN
            kind := 'outdated_trigger';
            detail := 'capture trigger differs from what this version renders; run simtrail install';
        ELSE
            CONTINUE;
        END IF;
        RETURN NEXT;
    END LOOP;

    FOR r IN
        SELECT DISTINCT g.tgrelid::regclass::text AS name FROM pg_catalog.pg_trigger AS g
        WHERE g.tgname LIKE 'simtrail\_capture\_%' AND NOT g.tgisinternal
          AND g.tgrelid NOT IN (SELECT c.relid FROM simtrail.config_rows() AS c
                                WHERE c.enabled AND c.relid IS NOT NULL)
    LOOP
        severity := 'error'; kind := 'stray_trigger'; table_name := r.name;
        detail := 'has a simtrail capture trigger but is not enabled in simulation_table_config';
        RETURN NEXT;
    END LOOP;
END
$$;

-- Remove capture from every table, including triggers and functions of ours
-- that the bookkeeping lost track of. Returns the tables it touched.
CREATE OR REPLACE FUNCTION simtrail.detach_everything()
RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT t.relid, t.table_name FROM simtrail.captured_tables AS t ORDER BY 2 LOOP
        PERFORM simtrail.detach(r.relid);
        RETURN NEXT r.table_name;
    END LOOP;
    FOR r IN
        SELECT DISTINCT g.tgrelid::regclass AS relid FROM pg_catalog.pg_trigger AS g
        WHERE pg_catalog.starts_with(g.tgname, 'simtrail_capture_') AND NOT g.tgisinternal
    LOOP
        PERFORM simtrail.drop_triggers(r.relid);
        RETURN NEXT r.relid::text;
    END LOOP;
    FOR r IN
        SELECT p.oid::regprocedure AS fn FROM pg_catalog.pg_proc AS p
        WHERE p.pronamespace = 'simtrail'::regnamespace
          AND pg_catalog.starts_with(p.proname, 'capture_') AND p.prorettype = 'trigger'::regtype
    LOOP
        EXECUTE pg_catalog.format('DROP FUNCTION %s', r.fn);
    END LOOP;
END
$$;
