-- Capture: the per-transaction actor record, the generated per-table capture
-- functions, and the fix-up for rows whose parent vanished in the same cascade.
-- Re-applied by every install (CREATE OR REPLACE), after the versioned files.

-- Registering a transaction: its row in simtrail.transactions, written at its
-- first captured statement. Whether a transaction is registered is read from
-- simtrail.transactions itself, never from a setting: any session can write a
-- GUC, and one that claimed to be registered would skip the actor and the
-- log's bookkeeping. The generated capture functions do the same inline
-- (render_registration): PERFORM of this function, its ON CONFLICT and the
-- old plpgsql loop of current_actor cost every autocommit statement about
-- 20 µs of backend CPU more (on some 150 µs of capture in all).
CREATE OR REPLACE FUNCTION simtrail.begin_xact(p_xid xid8)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM simtrail.transactions AS t WHERE t.xact_id = p_xid) THEN
        -- Only this transaction can add this xid's row, and the probe
        -- above sees its own writes: nothing can conflict.
        INSERT INTO simtrail.transactions (xact_id, first_change_id, started_at, actor)
        VALUES (p_xid, pg_catalog.nextval('simtrail.change_id_seq'), pg_catalog.now(),
                simtrail.current_actor());
    END IF;
END
$$;

-- Who is acting. Three kinds of field, of different worth:
--   sub, role, email, claims_unparsed: the JWT claims in request.jwt.claims,
--     as PostgREST sets them after checking the token; any session may set
--     that GUC itself, so they are what the session *claimed*;
--   actor, application_name: free text the client chose;
--   session_user, db_role, client_addr: what PostgreSQL itself checked. The
--     login role, and the role the session switched to with SET ROLE (which
--     requires membership and cannot be run inside a SECURITY DEFINER
--     function); 'none' is not stored, meaning session_user acted as itself.
-- Claims never fail the write: they are parsed only when small, any parse
-- error keeps them as text, and every field is capped so an actor stays a
-- few KB however large the claims are. Capped fields are listed in
-- "truncated".
--
-- The capture functions compute it inline, in three steps whose SQL comes
-- from render_actor: parse the claims (the only step that can fail, so the
-- only one inside an exception block), build the object in one expression,
-- and cap it only when some field is too long (rare; simtrail.cap_actor).
-- current_actor runs the same three, so the two cannot drift apart.
CREATE OR REPLACE FUNCTION simtrail.render_actor(p_var text)
RETURNS text[]
LANGUAGE sql IMMUTABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT ARRAY[
        -- 1: the parsed claims, or NULL (absent, or too big to parse).
        $r$CASE WHEN pg_catalog.octet_length(pg_catalog.current_setting('request.jwt.claims', true)) <= 16384 THEN nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb END$r$,
        -- 2: the actor, uncapped, from the parsed claims in p_var. Claims
        -- that are no object are kept as text; ->> of a non-object is NULL.
        pg_catalog.format($r$pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object('sub', %1$s ->> 'sub', 'role', %1$s ->> 'role', 'email', %1$s ->> 'email', 'claims_unparsed', CASE WHEN pg_catalog.jsonb_typeof(%1$s) IS DISTINCT FROM 'object' THEN nullif(pg_catalog.current_setting('request.jwt.claims', true), '') END, 'actor', nullif(pg_catalog.current_setting('simtrail.actor', true), ''), 'session_user', session_user::text, 'db_role', nullif(pg_catalog.current_setting('role', true), 'none'), 'application_name', nullif(pg_catalog.current_setting('application_name', true), ''), 'client_addr', pg_catalog.host(pg_catalog.inet_client_addr())))$r$, p_var),
        -- 3: true when the actor in p_var has a field to cap. session_user
        -- and db_role are role names (at most 63 bytes), client_addr an
        -- address: only the other fields can be long.
        pg_catalog.format($r$GREATEST(pg_catalog.length(%1$s ->> 'sub'), pg_catalog.length(%1$s ->> 'role'), pg_catalog.length(%1$s ->> 'email'), pg_catalog.length(%1$s ->> 'claims_unparsed'), pg_catalog.length(%1$s ->> 'actor'), pg_catalog.length(%1$s ->> 'application_name')) > 256$r$, p_var)]
$$;

-- Caps every field of an actor at 256 characters and lists the capped ones,
-- in a fixed order, under "truncated".
CREATE OR REPLACE FUNCTION simtrail.cap_actor(p_actor jsonb)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    c_cap constant integer := 256;
    v_out jsonb := p_actor;
    v_truncated text[] := ARRAY[]::text[];
    f record;
BEGIN
    FOR f IN
        SELECT u.key, p_actor ->> u.key AS value
        FROM pg_catalog.unnest(ARRAY['sub', 'role', 'email', 'claims_unparsed', 'actor',
                                     'session_user', 'db_role', 'application_name',
                                     'client_addr']) WITH ORDINALITY AS u (key, ord)
        WHERE pg_catalog.length(p_actor ->> u.key) > c_cap
        ORDER BY u.ord
    LOOP
        v_truncated := v_truncated || f.key;
        v_out := v_out || pg_catalog.jsonb_build_object(f.key, pg_catalog.left(f.value, c_cap));
    END LOOP;
    IF pg_catalog.cardinality(v_truncated) > 0 THEN
        v_out := v_out || pg_catalog.jsonb_build_object('truncated', v_truncated);
    END IF;
    RETURN v_out;
END
$$;

-- The actor of the calling session, as a capture function records it.
CREATE OR REPLACE FUNCTION simtrail.current_actor()
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_sql text[] := simtrail.render_actor('$1');
    v_claims jsonb;
    v_actor jsonb;
    v_long boolean;
BEGIN
    BEGIN
        EXECUTE 'SELECT ' || v_sql[1] INTO v_claims;
    EXCEPTION WHEN OTHERS THEN
        -- \u0000, numbers out of range, nesting past the stack,
        -- broken escapes: whatever it is, the write goes on.
        v_claims := NULL;
    END;
    EXECUTE 'SELECT ' || v_sql[2] INTO v_actor USING v_claims;
    EXECUTE 'SELECT ' || v_sql[3] INTO v_long USING v_actor;
    IF v_long THEN
        v_actor := simtrail.cap_actor(v_actor);
    END IF;
    RETURN v_actor;
END
$$;

-- The statements of a capture function that register its transaction
-- (see begin_xact), with the actor computed inline (see render_actor).
-- v_xid holds the transaction's id, v_actor is scratch.
CREATE OR REPLACE FUNCTION simtrail.render_registration()
RETURNS text
LANGUAGE sql IMMUTABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.format($f$IF NOT EXISTS (SELECT 1 FROM simtrail.transactions AS t WHERE t.xact_id = v_xid) THEN
        BEGIN
            v_actor := %1$s;
        EXCEPTION WHEN OTHERS THEN
            -- Claims that do not parse are kept as text: the write goes on.
            v_actor := NULL;
        END;
        v_actor := %2$s;
        IF %3$s THEN
            v_actor := simtrail.cap_actor(v_actor);
        END IF;
        -- Only this transaction can add this xid's row, and the probe above
        -- sees its own writes: a plain INSERT, nothing can conflict.
        INSERT INTO simtrail.transactions (xact_id, first_change_id, started_at, actor)
        VALUES (v_xid, pg_catalog.nextval('simtrail.change_id_seq'), pg_catalog.now(), v_actor);
    END IF;$f$, r[1], r[2], r[3])
    FROM (SELECT simtrail.render_actor('v_actor') AS r) AS a
$$;

-- A child whose parent row was deleted by the same statement (an ON DELETE
-- CASCADE or SET NULL) cannot find its tenant through live rows. PostgreSQL
-- runs the parent's AFTER STATEMENT trigger before the cascaded children's, so
-- the parent's old image, with its tenant, is already in this transaction's
-- log: take the tenant from there, one hop up the config's tenant path.
CREATE OR REPLACE FUNCTION simtrail.resolve_unattributed(p_xid xid8, p_table text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
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
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
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
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
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
                SELECT m.old_tenant, m.new_tenant, pg_catalog.to_jsonb(c.*) AS img,
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
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT 'capture_' || pg_catalog.left(c.relname::text, 40) || '_'
           || pg_catalog.left(pg_catalog.md5(p_relid::text), 8)
    FROM pg_catalog.pg_class AS c WHERE c.oid = p_relid
$$;

-- The relations whose writes a configured table's capture must see: the
-- table itself and, when it is partitioned, every partition below it. A
-- statement naming a partition fires only that partition's statement
-- triggers, so each carries its own (logging under the configured name).
CREATE OR REPLACE FUNCTION simtrail.capture_relations(p_relid regclass)
RETURNS SETOF regclass
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT p_relid
    UNION ALL
    (SELECT t.relid FROM pg_catalog.pg_partition_tree(p_relid) AS t
     WHERE t.relid <> p_relid ORDER BY t.level, t.relid::text)
$$;

-- The statements that attach capture to one table: its generated function and
-- its four triggers, on the table and on each of its partitions. Everything is
-- derived from the catalog and the config, so rendering twice gives the same
-- text, and its hash tells when it is outdated (a new partition changes it).
CREATE OR REPLACE FUNCTION simtrail.render_capture(p_relid regclass)
RETURNS TABLE (
    function_name text,
    pk_columns text[],
    tenant_path jsonb,
    statements text[],
    trigger_hash text
)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_name text := p_relid::text;
    v_hops jsonb;
    v_is_chain boolean;
    v_is_parent boolean;
    v_fn text;
    v_update text[] := ARRAY[]::text[];
    v_xid_ref text;
    v_body text;
    v_rows_new text;
    v_rows_old text;
    v_hold_new text;
    v_hold_old text;
    v_hold_live text;
    v_hold_pairs text;
    v_live text[];
    v_rel regclass;
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

    -- One SELECT list per source of rows; each yields rn, tenant, keyed, img
    -- and pk. For TRUNCATE the source is whichever relation fired, so that
    -- text is kept in two halves around it.
    v_rows_new := simtrail.render_row_source('simtrail_new', pk_columns, tenant_path);
    v_hold_new := simtrail.render_tenant_hold(
        simtrail.render_source_tenants('simtrail_new', tenant_path));
    v_hold_old := simtrail.render_tenant_hold(
        simtrail.render_source_tenants('simtrail_old', tenant_path));
    v_hold_live := simtrail.render_tenant_hold(
        simtrail.render_source_tenants(v_name, tenant_path));
    v_hold_pairs := simtrail.render_tenant_hold(
        simtrail.render_source_tenants('simtrail_old', tenant_path) || ' UNION ALL '
        || simtrail.render_source_tenants('simtrail_new', tenant_path));
    v_rows_old := simtrail.render_row_source('simtrail_old', pk_columns, tenant_path);
    v_live := simtrail.render_row_source_parts(pk_columns, tenant_path);

    -- Rendered once per way of naming the xid, not patched by replacing a
    -- placeholder: a user's column or table name may contain any placeholder.
    FOREACH v_xid_ref IN ARRAY ARRAY['$1', 'v_xid'] LOOP
        v_update := v_update || pg_catalog.format($u$WITH pairs AS (
                SELECT o.tenant AS old_tenant, n.tenant AS new_tenant, o.keyed AS old_keyed,
                       n.keyed AS new_keyed, o.img AS old_img, n.img AS new_img, n.pk,
                       CASE WHEN o.pk <> n.pk THEN o.pk END AS old_pk
                FROM (%1$s) AS o
                JOIN (%2$s) AS n ON n.rn = o.rn
            )%3$s
            INSERT INTO simtrail.changes
                (tenant_id, table_name, operation, row_pk, old_pk, old_data, new_data, xact_id,
                 moved)
            SELECT s.tenant, %4$L, 'UPDATE', p.pk, p.old_pk, p.old_img, p.new_img, %6$s, s.moved
            FROM pairs AS p
            CROSS JOIN LATERAL (
                SELECT p.old_tenant, NULL::text WHERE p.old_tenant IS NOT DISTINCT FROM p.new_tenant
                UNION ALL
                SELECT p.old_tenant, 'out'
                WHERE p.old_tenant IS DISTINCT FROM p.new_tenant AND p.old_keyed
                UNION ALL
                SELECT p.new_tenant, 'in'
                WHERE p.old_tenant IS DISTINCT FROM p.new_tenant AND p.new_keyed
            ) AS s (tenant, moved)
            WHERE %7$s%5$s$u$,
            v_rows_old, v_rows_new,
            CASE WHEN v_is_parent THEN ', logged AS (' ELSE '' END,
            v_name,
            CASE WHEN v_is_parent THEN $r$
            )
            SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                       'img', p.new_img, 'old_tenant', p.old_tenant, 'new_tenant', p.new_tenant))
                   FILTER (WHERE p.old_tenant IS DISTINCT FROM p.new_tenant)
            FROM pairs AS p$r$ ELSE '' END,
            v_xid_ref, v_hold_pairs);
    END LOOP;

    v_body := pg_catalog.format($f$
-- Generated by simtrail for %1$s. Do not edit: `simtrail install` rewrites it.
DECLARE
    v_xid xid8 := pg_catalog.pg_current_xact_id();
    v_moved jsonb;
    v_actor jsonb;
BEGIN
    -- Whether this transaction is registered is read from the log, never
    -- from a setting a session could write: one index probe per statement.
    %7$s
    IF TG_OP = 'INSERT' THEN
        INSERT INTO simtrail.changes (tenant_id, table_name, operation, row_pk, new_data, xact_id)
        SELECT n.tenant, %2$L, 'INSERT', n.pk, n.img, v_xid FROM (%3$s) AS n
        WHERE %13$s;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO simtrail.changes (tenant_id, table_name, operation, row_pk, old_data, xact_id)
        SELECT o.tenant, %2$L, 'DELETE', o.pk, o.img, v_xid FROM (%4$s) AS o
        WHERE %14$s;
    ELSIF TG_OP = 'TRUNCATE' THEN
        -- The tenant locks first, so a writer that waited for a rewind logs
        -- after it (locks.sql).
        PERFORM %15$s;
        -- A TRUNCATE fires the trigger of every table it empties, partitions
        -- included, so each reads only its own rows.
        EXECUTE %5$L || 'ONLY ' || TG_RELID::regclass::text || %12$L USING v_xid;
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
        v_name, v_name, v_rows_new, v_rows_old,
        pg_catalog.format('INSERT INTO simtrail.changes (tenant_id, table_name, operation, row_pk, '
                          'old_data, xact_id) SELECT o.tenant, %L, ''TRUNCATE'', o.pk, o.img, $1 '
                          'FROM (%s', v_name, v_live[1]),
        CASE WHEN v_is_chain THEN pg_catalog.format($r$
    IF TG_OP <> 'INSERT' THEN
        PERFORM simtrail.resolve_unattributed(v_xid, %L);
    END IF;$r$, v_name) ELSE '' END,
        simtrail.render_registration(),
        -- Only tables that others reach their tenant through pay for this:
        -- the moved rows are collected so their descendants can follow.
        CASE WHEN v_is_parent THEN pg_catalog.format($r$
            IF v_moved IS NOT NULL THEN
                PERFORM simtrail.log_descendant_moves(v_xid, %L, v_moved);
            END IF;$r$, v_name) ELSE '' END,
        v_update[1],
        CASE WHEN v_is_parent THEN ' INTO v_moved' ELSE '' END,
        v_update[2],
        v_live[2] || ') AS o',
        v_hold_new, v_hold_old, v_hold_live);

    v_fn := pg_catalog.format('simtrail.%I()', function_name);
    statements := ARRAY[
        pg_catalog.format(
            'CREATE OR REPLACE FUNCTION %s RETURNS trigger LANGUAGE plpgsql '
            -- The capture statements are simple; JIT compiling them for a
            -- large transition table costs far more than it saves.
            -- pg_temp named last: with an empty path it would be searched
            -- first for types and relations, so a caller's temp domain
            -- `text` (with a CHECK calling its own function) would run as
            -- simtrail's owner.
            'SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET jit = off '
            -- Images are value text, and these settings, which any session
            -- may change, decide how floats, intervals, ranges of dates and
            -- times, timestamptz offsets, bytea and money are spelled. Pinned,
            -- an image reads back to the same value whoever wrote it.
            'SET "DateStyle" = ''ISO, YMD'' SET "IntervalStyle" = ''postgres'' '
            'SET "TimeZone" = ''UTC'' SET extra_float_digits = 1 SET bytea_output = ''hex'' '
            'SET lc_monetary = ''C'' AS %L', v_fn, v_body),
        pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', v_fn)];
    FOR v_rel IN SELECT * FROM simtrail.capture_relations(p_relid) LOOP
        statements := statements || ARRAY[
            pg_catalog.format(
                'CREATE TRIGGER simtrail_capture_insert AFTER INSERT ON %s '
                'REFERENCING NEW TABLE AS simtrail_new FOR EACH STATEMENT EXECUTE FUNCTION %s',
                v_rel, v_fn),
            pg_catalog.format(
                'CREATE TRIGGER simtrail_capture_update AFTER UPDATE ON %s '
                'REFERENCING OLD TABLE AS simtrail_old NEW TABLE AS simtrail_new '
                'FOR EACH STATEMENT EXECUTE FUNCTION %s', v_rel, v_fn),
            pg_catalog.format(
                'CREATE TRIGGER simtrail_capture_delete AFTER DELETE ON %s '
                'REFERENCING OLD TABLE AS simtrail_old FOR EACH STATEMENT EXECUTE FUNCTION %s',
                v_rel, v_fn),
            pg_catalog.format(
                'CREATE TRIGGER simtrail_capture_truncate BEFORE TRUNCATE ON %s '
                'FOR EACH STATEMENT EXECUTE FUNCTION %s', v_rel, v_fn),
            -- ALWAYS: a session in replica mode (bulk loads, some restore tools)
            -- must not slip past capture.
            pg_catalog.format(
                'ALTER TABLE %s ENABLE ALWAYS TRIGGER simtrail_capture_insert, '
                'ENABLE ALWAYS TRIGGER simtrail_capture_update, '
                'ENABLE ALWAYS TRIGGER simtrail_capture_delete, '
                'ENABLE ALWAYS TRIGGER simtrail_capture_truncate', v_rel)];
    END LOOP;
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
LANGUAGE plpgsql IMMUTABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_parts text[] := simtrail.render_row_source_parts(p_pk, p_path);
BEGIN
    RETURN v_parts[1] || p_source || v_parts[2];
END
$$;

-- render_row_source's text before and after the source. A user's column may
-- have any name, so the source's columns are read only qualified (r."col")
-- or as the whole row r.*, and everything else is a column of our own
-- subquery x: no name here can resolve to a user's column by accident.
CREATE OR REPLACE FUNCTION simtrail.render_row_source_parts(p_pk text[], p_path jsonb)
RETURNS text[]
LANGUAGE plpgsql IMMUTABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_first text := coalesce(p_path -> 'hops' -> 0 ->> 'column', p_path ->> 'tenant_column');
    v_lookup jsonb := simtrail.render_tenant_lookup_from(p_path, 'x.k');
    v_pk text;
BEGIN
    SELECT pg_catalog.string_agg(pg_catalog.format('%L, r.%I', c, c), ', ' ORDER BY o)
      INTO v_pk
      FROM pg_catalog.unnest(p_pk) WITH ORDINALITY AS u(c, o);
    RETURN ARRAY[
        pg_catalog.format(
            'SELECT x.rn, %1$s AS tenant, '
            'x.k IS NOT NULL AS keyed, x.img, x.pk '
            'FROM (SELECT pg_catalog.row_number() OVER () AS rn, pg_catalog.to_jsonb(r.*) AS img, '
            'pg_catalog.jsonb_build_object(%2$s) AS pk, r.%3$I AS k FROM ',
            v_lookup ->> 'tenant', v_pk, v_first),
        pg_catalog.format(' AS r) AS x%s', v_lookup ->> 'joins')];
END
$$;

-- The filter that takes the tenant lock (locks.sql) of every tenant a
-- statement logs for, before it logs. p_tenants is a SELECT of a column
-- `tenant` (NULLs and repeats allowed). The filter has no row in it, so it is
-- a one-time filter: it runs before the first row is inserted, and a writer
-- that waited for a rewind gets change ids after the rewind's. It locks the
-- rows that exist; only when some tenant has none yet does it call
-- simtrail.add_tenant_locks. Inlined, and over the transition table rather
-- than a CTE of the logged rows: a function call or a materialised CTE per
-- statement cost several times the lock itself.
CREATE OR REPLACE FUNCTION simtrail.render_tenant_hold(p_tenants text)
RETURNS text
LANGUAGE sql IMMUTABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.format(
        '((SELECT pg_catalog.count(*) FROM (SELECT DISTINCT t.tenant FROM (%1$s) AS t) AS t'
        ' WHERE t.tenant IS NOT NULL AND NOT EXISTS (SELECT FROM simtrail.tenant_locks AS k'
        ' WHERE k.tenant_id = t.tenant FOR KEY SHARE OF k)) = 0'
        ' OR (SELECT simtrail.add_tenant_locks(ARRAY('
        'SELECT DISTINCT t.tenant FROM (%1$s) AS t WHERE t.tenant IS NOT NULL))))', p_tenants)
$$;

-- The tenants of the rows of p_source (a transition table or the table),
-- one row each: SELECT … AS tenant.
CREATE OR REPLACE FUNCTION simtrail.render_source_tenants(p_source text, p_path jsonb)
RETURNS text
LANGUAGE plpgsql IMMUTABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_lookup jsonb := simtrail.render_tenant_lookup(p_path, 'simtrail_r');
BEGIN
    RETURN pg_catalog.format('SELECT %s AS tenant FROM %s AS simtrail_r%s',
                             v_lookup ->> 'tenant', p_source, v_lookup ->> 'joins');
END
$$;

-- render_tenant_lookup, given the SQL expression for the path's first column
-- (the tenant column itself when the path has no hops).
CREATE OR REPLACE FUNCTION simtrail.render_tenant_lookup_from(p_path jsonb, p_first text)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_hops jsonb := p_path -> 'hops';
    v_joins text := '';
    v_prev text := p_first;
    v_alias text;
    i integer;
BEGIN
    FOR i IN 0 .. pg_catalog.jsonb_array_length(v_hops) - 1 LOOP
        v_alias := 'p' || (i + 1);
        v_joins := v_joins || pg_catalog.format(
            ' LEFT JOIN %s AS %I ON %I.%I = %s',
            (v_hops -> i ->> 'parent')::regclass, v_alias, v_alias,
            v_hops -> i ->> 'parent_column', v_prev);
        v_prev := pg_catalog.format('%I.%I', v_alias,
                      coalesce(v_hops -> (i + 1) ->> 'column', p_path ->> 'tenant_column'));
    END LOOP;
    RETURN pg_catalog.jsonb_build_object(
        'joins', v_joins,
        'tenant', pg_catalog.format('(%s)::text', v_prev),
        -- The tenant column itself, for a comparison with a typed literal
        -- that can use an index on it.
        'tenant_column', v_prev,
        'key', p_first);
END
$$;

-- SQL fragments that find the tenant of the row expression p_row by its
-- tenant path: {"joins": " LEFT JOIN … AS p1 …", "tenant": "(p1.tenant_id)::text",
-- "key": "<p_row>.<first column of the path>"}. Parents are aliased p1, p2, …
-- and only ever read qualified, so a user's column named p1 changes nothing.
CREATE OR REPLACE FUNCTION simtrail.render_tenant_lookup(p_path jsonb, p_row text)
RETURNS jsonb
LANGUAGE sql IMMUTABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT simtrail.render_tenant_lookup_from(p_path, pg_catalog.format('%s.%I', p_row,
               coalesce(p_path -> 'hops' -> 0 ->> 'column', p_path ->> 'tenant_column')))
$$;

-- What the four capture triggers on a table look like right now. For a
-- partitioned table, the counts are those of its least covered relation, so a
-- partition without triggers shows as missing.
CREATE OR REPLACE FUNCTION simtrail.trigger_state(p_relid regclass)
RETURNS TABLE (present integer, always_enabled integer, hashes text[])
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH tree AS (SELECT r.relid FROM simtrail.capture_relations(p_relid) AS r (relid)),
    per AS (
        SELECT tr.relid, pg_catalog.count(t.oid)::integer AS n,
               (pg_catalog.count(t.oid) FILTER (WHERE t.tgenabled = 'A'))::integer AS a
        FROM tree AS tr
        LEFT JOIN pg_catalog.pg_trigger AS t
               ON t.tgrelid = tr.relid
              AND t.tgname IN ('simtrail_capture_insert', 'simtrail_capture_update',
                               'simtrail_capture_delete', 'simtrail_capture_truncate')
        GROUP BY tr.relid
    )
    SELECT (SELECT pg_catalog.min(p.n) FROM per AS p),
           (SELECT pg_catalog.min(p.a) FROM per AS p),
           (SELECT pg_catalog.array_agg(DISTINCT pg_catalog.obj_description(t.oid, 'pg_trigger'))
            FROM pg_catalog.pg_trigger AS t
            WHERE t.tgrelid IN (SELECT tr.relid FROM tree AS tr)
              AND t.tgname IN ('simtrail_capture_insert', 'simtrail_capture_update',
                               'simtrail_capture_delete', 'simtrail_capture_truncate'))
$$;

-- Partitions of a configured table that lack some capture trigger.
CREATE OR REPLACE FUNCTION simtrail.uncaptured_partitions(p_relid regclass)
RETURNS SETOF text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT r.relid::text FROM simtrail.capture_relations(p_relid) AS r (relid)
    WHERE r.relid <> p_relid
      AND (SELECT pg_catalog.count(*) FROM pg_catalog.pg_trigger AS t
           WHERE t.tgrelid = r.relid AND t.tgenabled = 'A'
             AND t.tgname IN ('simtrail_capture_insert', 'simtrail_capture_update',
                              'simtrail_capture_delete', 'simtrail_capture_truncate')) < 4
$$;

CREATE OR REPLACE FUNCTION simtrail.attach(p_relid regclass)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
    v_stmt text;
    v_trigger text;
    v_rel regclass;
BEGIN
    SELECT * INTO r FROM simtrail.render_capture(p_relid);
    PERFORM simtrail.drop_triggers(p_relid);
    FOREACH v_stmt IN ARRAY r.statements LOOP
        EXECUTE v_stmt;
    END LOOP;
    FOR v_rel IN SELECT * FROM simtrail.capture_relations(p_relid) LOOP
        FOREACH v_trigger IN ARRAY ARRAY['simtrail_capture_insert', 'simtrail_capture_update',
                                         'simtrail_capture_delete', 'simtrail_capture_truncate'] LOOP
            EXECUTE pg_catalog.format('COMMENT ON TRIGGER %I ON %s IS %L',
                                      v_trigger, v_rel, 'simtrail ' || r.trigger_hash);
        END LOOP;
    END LOOP;
    INSERT INTO simtrail.captured_tables
        (relid, table_name, function_name, pk_columns, tenant_path, trigger_hash)
    VALUES (p_relid, p_relid::text, r.function_name, r.pk_columns, r.tenant_path, r.trigger_hash)
    ON CONFLICT (relid) DO UPDATE
       SET table_name = EXCLUDED.table_name, function_name = EXCLUDED.function_name,
           pk_columns = EXCLUDED.pk_columns, tenant_path = EXCLUDED.tenant_path,
           trigger_hash = EXCLUDED.trigger_hash, attached_at = pg_catalog.now();
    -- The triggers exist and hold their lock until commit: no write after
    -- this moment goes uncaptured, so it is where an open gap ends.
    UPDATE simtrail.capture_gaps AS g SET closed_at = pg_catalog.clock_timestamp()
    WHERE g.table_name = p_relid::text AND g.closed_at IS NULL;
END
$$;

CREATE OR REPLACE FUNCTION simtrail.drop_triggers(p_relid regclass)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_trigger record;
BEGIN
    FOR v_trigger IN
        SELECT t.tgname, t.tgrelid::regclass AS rel FROM pg_catalog.pg_trigger AS t
        WHERE t.tgrelid IN (SELECT r.relid FROM simtrail.capture_relations(p_relid) AS r (relid))
          AND t.tgname LIKE 'simtrail\_capture\_%' AND NOT t.tgisinternal
    LOOP
        EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', v_trigger.tgname, v_trigger.rel);
    END LOOP;
END
$$;

-- Stop capturing a table. Writes from now until it is attached again are not
-- logged, so the window is recorded: doctor reports it and a rewind to a
-- point before its end refuses unless forced.
CREATE OR REPLACE FUNCTION simtrail.detach(p_relid oid)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_fn text;
    v_name text;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_class AS c WHERE c.oid = p_relid) THEN
        PERFORM simtrail.drop_triggers(p_relid::regclass);
    END IF;
    SELECT t.function_name, t.table_name INTO v_fn, v_name
    FROM simtrail.captured_tables AS t WHERE t.relid = p_relid;
    IF v_fn IS NOT NULL THEN
        EXECUTE pg_catalog.format('DROP FUNCTION IF EXISTS simtrail.%I()', v_fn);
        INSERT INTO simtrail.capture_gaps (table_name, opened_at, reason)
        SELECT v_name, pg_catalog.now(), 'capture detached: its config row was disabled or removed'
        WHERE NOT EXISTS (SELECT 1 FROM simtrail.capture_gaps AS g
                          WHERE g.table_name = v_name AND g.closed_at IS NULL);
    END IF;
    DELETE FROM simtrail.captured_tables AS t WHERE t.relid = p_relid;
END
$$;

-- Windows in which a captured table lost writes, that end after p_at: a
-- rewind to p_at cannot undo what was written in them. Raises unless
-- p_force; forced, returns {"capture_gaps_ignored": [...]} for the report.
CREATE OR REPLACE FUNCTION simtrail.check_capture_gaps(p_at timestamptz, p_force boolean)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_gaps jsonb;
    v_text text;
BEGIN
    SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'table', g.table_name, 'from', g.opened_at, 'to', g.closed_at) ORDER BY g.id),
           pg_catalog.string_agg(pg_catalog.format('%s from %s to %s', g.table_name,
               g.opened_at, g.closed_at), '; ' ORDER BY g.id)
      INTO v_gaps, v_text
    FROM simtrail.capture_gaps AS g
    WHERE g.closed_at IS NOT NULL AND g.closed_at > p_at
      AND g.table_name IN (SELECT t.table_name FROM simtrail.captured_tables AS t);
    IF v_gaps IS NULL THEN
        RETURN '{}';
    END IF;
    IF NOT p_force THEN
        RAISE EXCEPTION 'refused: writes were not captured in % (capture was detached), so a rewind to % cannot undo them; rewind with force to go ahead anyway',
            v_text, p_at USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    RETURN pg_catalog.jsonb_build_object('capture_gaps_ignored', v_gaps);
END
$$;

-- Bring the triggers in line with the config: attach to enabled tables that
-- lack a current trigger, detach from tables that are no longer enabled.
-- Refuses, changing nothing, while any enabled config row has a problem.
-- With p_apply false it only reports what it would do.
CREATE OR REPLACE FUNCTION simtrail.sync(p_apply boolean)
RETURNS TABLE (action text, table_name text, detail text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_bad_names text[];
    v_bad_relids oid[];
    r record;
    v_state record;
    v_own record;
    v_hash text;
BEGIN
    -- The installer and the daemon may both sync; one at a time.
    PERFORM simtrail.take_lock('sync');

    FOR r IN SELECT p.table_name, p.problem FROM simtrail.config_problems() AS p ORDER BY 1, 2 LOOP
        action := 'refuse';
        table_name := r.table_name;
        detail := r.problem;
        v_bad_names := v_bad_names || r.table_name;
        RETURN NEXT;
    END LOOP;
    v_bad_names := coalesce(v_bad_names, ARRAY[]::text[]);
    -- A refused row's table keeps whatever capture it has: detaching it
    -- would open a gap in its history over a config typo.
    SELECT coalesce(pg_catalog.array_agg(c.relid::oid), ARRAY[]::oid[]) INTO v_bad_relids
    FROM simtrail.config_rows() AS c
    WHERE c.relid IS NOT NULL AND c.table_name = ANY (v_bad_names);

    FOR r IN
        SELECT DISTINCT c.relid, c.relid::text AS name FROM simtrail.config_rows() AS c
        WHERE c.enabled AND c.relid IS NOT NULL AND c.relid::oid <> ALL (v_bad_relids)
        ORDER BY 2
    LOOP
        SELECT s.trigger_hash INTO v_hash FROM simtrail.render_capture(r.relid) AS s;
        SELECT * INTO v_state FROM simtrail.trigger_state(r.relid);
        table_name := r.relid::text;
        -- The table's own triggers; a partition's missing ones show in v_state only.
        SELECT pg_catalog.count(*) FILTER (WHERE t.tgenabled = 'A') AS enabled,
               pg_catalog.count(*) AS present
          INTO v_own
          FROM pg_catalog.pg_trigger AS t
         WHERE t.tgrelid = r.relid
           AND t.tgname IN ('simtrail_capture_insert', 'simtrail_capture_update',
                            'simtrail_capture_delete', 'simtrail_capture_truncate');
        IF v_own.present = 0 THEN
            action := 'attach';
            detail := 'no capture trigger yet';
        ELSIF v_own.present = 4 AND v_own.enabled = 4 AND v_state.present < 4 THEN
            action := 'refresh';
            detail := pg_catalog.format('partition(s) %s not captured yet',
                (SELECT pg_catalog.string_agg(u, ', ') FROM simtrail.uncaptured_partitions(r.relid) AS u));
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
            -- Triggers found missing or disabled (not merely outdated) may
            -- have missed writes since the table was last attached.
            IF action = 'refresh' AND (v_own.present < 4 OR v_own.enabled < 4) THEN
                INSERT INTO simtrail.capture_gaps (table_name, opened_at, reason)
                SELECT t.table_name, t.attached_at,
                       'capture triggers were found missing or disabled; the window starts at the last attach'
                FROM simtrail.captured_tables AS t
                WHERE t.relid = r.relid
                  AND NOT EXISTS (SELECT 1 FROM simtrail.capture_gaps AS g
                                  WHERE g.table_name = t.table_name AND g.closed_at IS NULL);
            END IF;
            PERFORM simtrail.attach(r.relid);
        END IF;
        RETURN NEXT;
    END LOOP;

    FOR r IN
        SELECT t.relid, t.table_name AS name FROM simtrail.captured_tables AS t
        WHERE t.relid NOT IN (SELECT c.relid FROM simtrail.config_rows() AS c
                              WHERE c.enabled AND c.relid IS NOT NULL)
          AND t.relid <> ALL (v_bad_relids)
        UNION
        SELECT DISTINCT g.tgrelid, g.tgrelid::regclass::text FROM pg_catalog.pg_trigger AS g
        WHERE g.tgname LIKE 'simtrail\_capture\_%' AND NOT g.tgisinternal
          AND g.tgrelid NOT IN (SELECT simtrail.capture_relations(c.relid) FROM simtrail.config_rows() AS c
                                WHERE c.enabled AND c.relid IS NOT NULL)
          AND g.tgrelid <> ALL (v_bad_relids)
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

-- Application roles (PUBLIC, anon, authenticated) that may write the config
-- table: each could switch capture off for any table. simtrail revokes these
-- rights on a table it creates, never on one it adopted. Rights held through
-- membership of another role count too; RLS does not make them safe (TRUNCATE
-- ignores it, and policies change).
CREATE OR REPLACE FUNCTION simtrail.config_table_writers()
RETURNS TABLE (grantee text, privileges text[])
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH config AS (
        SELECT c.oid, c.relacl FROM pg_catalog.pg_class AS c
        WHERE c.oid = pg_catalog.to_regclass('public.simulation_table_config')
    ), rights (privilege, ord) AS (
        VALUES ('INSERT', 1), ('UPDATE', 2), ('DELETE', 3), ('TRUNCATE', 4)
    )
    SELECT 'PUBLIC', pg_catalog.array_agg(r.privilege ORDER BY r.ord)
    FROM config AS c
    CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) AS a
    JOIN rights AS r ON r.privilege = a.privilege_type
    WHERE a.grantee = 0
    HAVING pg_catalog.count(*) > 0
    UNION ALL
    SELECT o.rolname::text, pg_catalog.array_agg(r.privilege ORDER BY r.ord)
    FROM config AS c
    CROSS JOIN pg_catalog.pg_roles AS o
    CROSS JOIN rights AS r
    WHERE o.rolname IN ('anon', 'authenticated')
      AND (pg_catalog.has_table_privilege(o.oid, c.oid, r.privilege)
           OR (r.privilege IN ('INSERT', 'UPDATE')
               AND pg_catalog.has_any_column_privilege(o.oid, c.oid, r.privilege)))
    GROUP BY o.rolname
$$;

-- Everything `simtrail doctor` reports, one row per finding.
CREATE OR REPLACE FUNCTION simtrail.doctor()
RETURNS TABLE (severity text, kind text, table_name text, detail text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
    v_state record;
    v_hash text;
    v_bad text[];
    v_parts text;
BEGIN
    SELECT pg_catalog.array_agg(p.table_name) INTO v_bad FROM simtrail.config_problems() AS p;
    FOR r IN SELECT * FROM simtrail.config_problems() LOOP
        severity := 'error'; kind := 'config'; table_name := r.table_name; detail := r.problem;
        RETURN NEXT;
    END LOOP;

    -- Tables discovery calls tenant data and nobody configured or ignored;
    -- user, tenant and catalogue tables are not tenant data (see discover.sql).
    FOR r IN
        SELECT * FROM simtrail.discover(NULL) AS d
        WHERE NOT d.configured AND d.status = 'proposed'
    LOOP
        severity := 'error'; kind := 'uncovered'; table_name := r.table_name;
        detail := pg_catalog.format('looks tenant-scoped (%s) but is not in simulation_table_config;'
                                    ' add it, or `simtrail config ignore %s` if it is not tenant data',
                                    r.reaches_tenant, r.table_name);
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
        SELECT pg_catalog.string_agg(u, ', ') INTO v_parts FROM simtrail.uncaptured_partitions(r.relid) AS u;
        IF v_parts IS NOT NULL AND EXISTS (
               SELECT 1 FROM pg_catalog.pg_trigger AS t
               WHERE t.tgrelid = r.relid AND t.tgname LIKE 'simtrail\_capture\_%') THEN
            kind := 'missing_trigger';
            detail := pg_catalog.format('partition(s) %s not captured: writes made straight into them are lost; run simtrail install', v_parts);
        ELSIF v_state.present = 0 THEN
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
          AND g.tgrelid NOT IN (SELECT simtrail.capture_relations(c.relid) FROM simtrail.config_rows() AS c
                                WHERE c.enabled AND c.relid IS NOT NULL)
    LOOP
        severity := 'error'; kind := 'stray_trigger'; table_name := r.name;
        detail := 'has a simtrail capture trigger but is not enabled in simulation_table_config';
        RETURN NEXT;
    END LOOP;

    -- Windows in which writes were not captured, until retention has moved
    -- past them: open ones (capture still detached) and closed ones, whose
    -- writes a rewind to an earlier point cannot undo.
    FOR r IN
        SELECT g.* FROM simtrail.capture_gaps AS g
        -- An open window on a table since dropped has nothing left to lose.
        WHERE (g.closed_at IS NULL AND pg_catalog.to_regclass(g.table_name) IS NOT NULL)
           OR g.closed_at > coalesce((SELECT d.horizon FROM simtrail.daemon_state AS d), '-infinity')
        ORDER BY g.table_name, g.id
    LOOP
        severity := 'warning'; kind := 'capture_gap'; table_name := r.table_name;
        detail := CASE WHEN r.closed_at IS NULL
            THEN pg_catalog.format('not captured since %s (%s)', r.opened_at, r.reason)
            ELSE pg_catalog.format('writes from %s to %s were not captured (%s); rewinds to a point before %s refuse unless forced',
                                   r.opened_at, r.closed_at, r.reason, r.closed_at) END;
        RETURN NEXT;
    END LOOP;

    SELECT pg_catalog.string_agg(pg_catalog.format('%s may %s', w.grantee,
                                     pg_catalog.array_to_string(w.privileges, ', ')), '; '
                                 ORDER BY w.grantee <> 'PUBLIC', w.grantee)
      INTO detail
    FROM simtrail.config_table_writers() AS w;
    IF detail IS NOT NULL THEN
        severity := 'error'; kind := 'config_writable';
        table_name := 'public.simulation_table_config';
        detail := detail || ' it, so an app role can switch capture off';
        RETURN NEXT;
    END IF;
END
$$;

-- Remove capture from every table, including triggers and functions of ours
-- that the bookkeeping lost track of. Returns the tables it touched.
CREATE OR REPLACE FUNCTION simtrail.detach_everything()
RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
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
