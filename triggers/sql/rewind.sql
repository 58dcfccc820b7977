-- Marks and rewinds: put one tenant back to an earlier state by replaying
-- inverse operations from the log, in one transaction, leaving every other
-- tenant and every unconfigured table alone.
-- Re-applied by every install (CREATE OR REPLACE), after the versioned files.
-- Every function pins search_path to `pg_catalog, pg_temp`: an empty path
-- would search the caller's pg_temp first for types and relations, so a temp
-- domain named `text` or `jsonb` could run the caller's code as our owner.

-- The tenant key in its canonical text form, checked against the tenant
-- column's type (so ' 7' and '07' both mean integer tenant 7, and a uuid in
-- upper case matches the log). Raises on a value the type rejects.
CREATE OR REPLACE FUNCTION simtrail.normalize_tenant(p_tenant text)
RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_type text;
    v_tenant text;
BEGIN
    IF p_tenant IS NULL OR pg_catalog.btrim(p_tenant) = '' THEN
        RAISE EXCEPTION 'a tenant is required' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT t.tenant_path ->> 'tenant_type' INTO v_type
    FROM simtrail.captured_tables AS t
    GROUP BY 1 ORDER BY pg_catalog.count(*) DESC, 1 LIMIT 1;
    IF v_type IS NULL THEN
        RETURN p_tenant;
    END IF;
    BEGIN
        EXECUTE pg_catalog.format('SELECT (%L::%s)::text', p_tenant, v_type) INTO v_tenant;
    EXCEPTION WHEN data_exception THEN
        RAISE EXCEPTION 'tenant % is not a valid % value', pg_catalog.quote_literal(p_tenant), v_type
            USING ERRCODE = 'invalid_parameter_value';
    END;
    RETURN v_tenant;
END
$$;

-- The application's own tenants tables: those that the tenant column of a
-- captured table with its own tenant column references by a one-column foreign
-- key. Each row: the table and the referenced column.
CREATE OR REPLACE FUNCTION simtrail.tenant_tables()
RETURNS TABLE (relid regclass, column_name text, column_type text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT DISTINCT k.confrelid::regclass, a.attname::text,
           pg_catalog.format_type(a.atttypid, a.atttypmod)
    FROM simtrail.captured_tables AS t
    JOIN pg_catalog.pg_attribute AS c
      ON c.attrelid = t.relid AND c.attname = t.tenant_path ->> 'tenant_column'
    JOIN pg_catalog.pg_constraint AS k
      ON k.contype = 'f' AND k.conrelid = t.relid AND k.conkey = ARRAY[c.attnum]
    JOIN pg_catalog.pg_attribute AS a
      ON a.attrelid = k.confrelid AND a.attnum = k.confkey[1]
    WHERE pg_catalog.jsonb_array_length(t.tenant_path -> 'hops') = 0
$$;

-- Whether simtrail has seen the tenant: the log, a mark, or a live row of a
-- table with its own tenant column names it.
CREATE OR REPLACE FUNCTION simtrail.tenant_seen(p_tenant text)
RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
    v_found boolean;
BEGIN
    IF EXISTS (SELECT 1 FROM simtrail.changes AS c WHERE c.tenant_id = p_tenant)
       OR EXISTS (SELECT 1 FROM simtrail.marks AS m WHERE m.tenant_id = p_tenant) THEN
        RETURN true;
    END IF;
    FOR r IN
        SELECT t.relid, t.tenant_path FROM simtrail.captured_tables AS t
        WHERE pg_catalog.jsonb_array_length(t.tenant_path -> 'hops') = 0
    LOOP
        EXECUTE pg_catalog.format('SELECT EXISTS (SELECT 1 FROM %s AS r WHERE r.%I::text = $1)',
                                  r.relid::regclass, r.tenant_path ->> 'tenant_column')
            INTO v_found USING p_tenant;
        IF v_found THEN
            RETURN true;
        END IF;
    END LOOP;
    RETURN false;
END
$$;

-- Whether the application's tenants table (see tenant_tables) holds the
-- tenant; NULL when the tenant columns reference no such table.
CREATE OR REPLACE FUNCTION simtrail.tenant_registered(p_tenant text)
RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
    v_found boolean;
    v_any boolean := false;
BEGIN
    FOR r IN SELECT * FROM simtrail.tenant_tables() LOOP
        v_any := true;
        EXECUTE pg_catalog.format('SELECT EXISTS (SELECT 1 FROM %s AS r WHERE r.%I = $1::%s)',
                                  r.relid, r.column_name, r.column_type)
            INTO v_found USING p_tenant;
        IF v_found THEN
            RETURN true;
        END IF;
    END LOOP;
    RETURN CASE WHEN v_any THEN false END;
END
$$;

-- A tenant is known when simtrail has seen it (tenant_seen) or the
-- application's tenants table holds it. Returns the canonical key or raises.
CREATE OR REPLACE FUNCTION simtrail.known_tenant(p_tenant text)
RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_tenant text := simtrail.normalize_tenant(p_tenant);
BEGIN
    IF simtrail.tenant_seen(v_tenant) OR coalesce(simtrail.tenant_registered(v_tenant), false) THEN
        RETURN v_tenant;
    END IF;
    RAISE EXCEPTION 'unknown tenant %: no captured row or change belongs to it', v_tenant
        USING ERRCODE = 'invalid_parameter_value';
END
$$;

-- The tenants a mark may be taken for: every known tenant, and a class that
-- has no rows yet (a launch mark comes first). With a tenants table the class
-- must be in it; without one, any value of the tenant column's type will do.
CREATE OR REPLACE FUNCTION simtrail.markable_tenant(p_tenant text)
RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_tenant text := simtrail.normalize_tenant(p_tenant);
    v_registered boolean;
BEGIN
    IF simtrail.tenant_seen(v_tenant) THEN
        RETURN v_tenant;
    END IF;
    v_registered := simtrail.tenant_registered(v_tenant);
    IF v_registered IS NULL OR v_registered THEN
        RETURN v_tenant;
    END IF;
    RAISE EXCEPTION 'unknown tenant %: not in %', v_tenant,
        (SELECT pg_catalog.string_agg(t.relid::text, ' or ' ORDER BY t.relid::text)
         FROM simtrail.tenant_tables() AS t)
        USING ERRCODE = 'invalid_parameter_value';
END
$$;

-- The current snapshot, except that this transaction counts as committed in
-- it: a mark taken at the end of a transaction that wrote (a clone's launch
-- mark) then includes that transaction's own changes. Transactions that got
-- their ids between the snapshot and ours count as running.
CREATE OR REPLACE FUNCTION simtrail.snapshot_with_self()
RETURNS pg_snapshot
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_snap pg_snapshot := pg_catalog.pg_current_snapshot();
    v_self xid8 := pg_catalog.pg_current_xact_id();
    v_xmax bigint := pg_catalog.pg_snapshot_xmax(v_snap)::text::bigint;
    v_me bigint := v_self::text::bigint;
BEGIN
    IF pg_catalog.pg_visible_in_snapshot(v_self, v_snap) THEN
        RETURN v_snap;
    END IF;
    RETURN pg_catalog.format('%s:%s:%s', pg_catalog.pg_snapshot_xmin(v_snap),
        GREATEST(v_xmax, v_me + 1),
        coalesce((SELECT pg_catalog.string_agg(x::text, ',' ORDER BY x)
                  FROM (SELECT x::text::bigint AS x FROM pg_catalog.pg_snapshot_xip(v_snap) AS x
                        UNION SELECT g FROM pg_catalog.generate_series(v_xmax, v_me - 1) AS g) AS z
                  WHERE z.x <> v_me), ''))::pg_snapshot;
END
$$;

-- Record a named point in a tenant's history. Takes no table lock: the
-- snapshot fixes exactly which transactions the mark includes.
-- A name the tenant already uses is refused, unless p_replace: then the older
-- mark(s) of that name are deleted and the new one takes their place.
-- p_snapshot is the point: pg_current_snapshot(), or snapshot_with_self().
CREATE OR REPLACE FUNCTION simtrail.mark_snapshot(
    p_tenant text, p_name text, p_replace boolean, p_snapshot pg_snapshot)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_tenant text := simtrail.markable_tenant(p_tenant);
    v_snapshot pg_snapshot := p_snapshot;
    v_scan_from bigint;
    v_replaced integer := 0;
    v_mark record;
BEGIN
    IF p_name IS NULL OR p_name = '' OR p_name ~ '[[:cntrl:]]' OR pg_catalog.length(p_name) > 200 THEN
        RAISE EXCEPTION 'a mark name must be 1 to 200 printable characters'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF coalesce(p_replace, false) THEN
        DELETE FROM simtrail.marks AS m WHERE m.tenant_id = v_tenant AND m.name = p_name;
        GET DIAGNOSTICS v_replaced = ROW_COUNT;
    END IF;
    v_scan_from := simtrail.scan_from(v_snapshot);
    -- The unique key, not a lookup first: a concurrent mark of the same name
    -- makes this wait for it, then fail, so two sessions never both win.
    BEGIN
        INSERT INTO simtrail.marks (tenant_id, name, snapshot, scan_from, created_by)
        VALUES (v_tenant, p_name, v_snapshot, v_scan_from, simtrail.current_actor())
        RETURNING id, tenant_id, name, created_at INTO v_mark;
    EXCEPTION WHEN unique_violation THEN
        RAISE EXCEPTION 'tenant % already has a mark %; choose another name, or replace it (--replace)',
            v_tenant, pg_catalog.quote_literal(p_name)
            USING ERRCODE = 'invalid_parameter_value';
    END;
    RETURN pg_catalog.jsonb_build_object('id', v_mark.id, 'tenant', v_mark.tenant_id,
                                         'name', v_mark.name, 'created_at', v_mark.created_at,
                                         'replaced', v_replaced);
END
$$;

-- Mark the current state (see mark_snapshot).
CREATE OR REPLACE FUNCTION simtrail.mark(p_tenant text, p_name text, p_replace boolean)
RETURNS jsonb
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT simtrail.mark_snapshot(p_tenant, p_name, p_replace, pg_catalog.pg_current_snapshot())
$$;

-- The first signature, kept for callers of earlier releases: never replaces.
CREATE OR REPLACE FUNCTION simtrail.mark(p_tenant text, p_name text)
RETURNS jsonb
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT simtrail.mark(p_tenant, p_name, false)
$$;

CREATE OR REPLACE FUNCTION simtrail.list_marks(p_tenant text)
RETURNS TABLE (id bigint, name text, created_at timestamptz, created_by jsonb)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_tenant text := simtrail.known_tenant(p_tenant);
BEGIN
    RETURN QUERY
        SELECT m.id, m.name, m.created_at, m.created_by FROM simtrail.marks AS m
        WHERE m.tenant_id = v_tenant ORDER BY m.id;
END
$$;

-- Deletes every mark of that name for the tenant; raises when there is none.
CREATE OR REPLACE FUNCTION simtrail.delete_mark(p_tenant text, p_name text)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_tenant text := simtrail.known_tenant(p_tenant);
    v_count integer;
BEGIN
    DELETE FROM simtrail.marks AS m WHERE m.tenant_id = v_tenant AND m.name = p_name;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    IF v_count = 0 THEN
        RAISE EXCEPTION 'tenant % has no mark %', v_tenant, pg_catalog.quote_literal(p_name)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN v_count;
END
$$;

-- Which of the tenant's changes a rewind to p_target undoes. Returns how the
-- target resolved, with `predicate`: a condition on simtrail.changes AS c
-- selecting exactly those changes, and `precision`: how exact the state is,
-- in words. TARGET is `mark:NAME`, `change:ID`, or an ISO-8601 time with a
-- UTC offset (see time_targets.sql; p_nearest applies to times only).
CREATE OR REPLACE FUNCTION simtrail.resolve_target(
    p_tenant text, p_target text, p_nearest boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_mark record;
    v_change record;
    v_boundary bigint;
    v_time timestamptz;
    v_log_start timestamptz;
    v_straddler xid8;
    v_horizon timestamptz;
BEGIN
    IF p_target IS NULL OR pg_catalog.btrim(p_target) = '' THEN
        RAISE EXCEPTION 'a target is required: mark:NAME, change:ID or an ISO-8601 time'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    IF pg_catalog.starts_with(p_target, 'mark:') THEN
        SELECT m.* INTO v_mark FROM simtrail.marks AS m
        WHERE m.tenant_id = p_tenant AND m.name = pg_catalog.substr(p_target, 6)
        ORDER BY m.id DESC LIMIT 1;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'tenant % has no mark %', p_tenant,
                pg_catalog.quote_literal(pg_catalog.substr(p_target, 6))
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        -- Exactly the transactions that had not committed when the mark was taken.
        RETURN pg_catalog.jsonb_build_object(
            'kind', 'mark', 'mark', v_mark.name, 'mark_id', v_mark.id,
            'at', v_mark.created_at, 'resolved_by', 'mark snapshot (exact)',
            'precision', 'exact: mark snapshot',
            'predicate', simtrail.cut_predicate(p_tenant, v_mark.scan_from, v_mark.snapshot,
                                                v_mark.generation));
    END IF;

    IF pg_catalog.starts_with(p_target, 'change:') THEN
        IF pg_catalog.substr(p_target, 8) !~ '^[0-9]{1,18}$' THEN
            RAISE EXCEPTION '% is not a change id', pg_catalog.quote_literal(pg_catalog.substr(p_target, 8))
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        SELECT c.id, c.xact_id, c.changed_at, c.net_count INTO v_change FROM simtrail.changes AS c
        WHERE c.id = pg_catalog.substr(p_target, 8)::bigint AND c.tenant_id = p_tenant;
        IF NOT FOUND AND EXISTS (SELECT 1 FROM simtrail.archive AS a
                                 WHERE a.id = pg_catalog.substr(p_target, 8)::bigint
                                   AND a.tenant_id = p_tenant) THEN
            v_change.net_count := 2;
        ELSIF NOT FOUND THEN
            RAISE EXCEPTION 'change % is not in the history of tenant %', pg_catalog.substr(p_target, 8),
                p_tenant || CASE WHEN (SELECT s.horizon FROM simtrail.daemon_state AS s) IS NOT NULL
                               THEN ' (or is older than the retention horizon)' ELSE '' END
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        -- The state right after the whole transaction of that change.
        SELECT pg_catalog.max(c.id) INTO v_boundary FROM simtrail.changes AS c
        WHERE c.tenant_id = p_tenant AND c.xact_id = v_change.xact_id AND c.id >= v_change.id;
        -- Compaction folded the changes around it into net changes: the
        -- state right after it is no longer in the log.
        IF v_change.net_count > 1 OR EXISTS (
               SELECT 1 FROM simtrail.changes AS n
               WHERE n.tenant_id = p_tenant AND n.id > v_boundary AND n.net_from <= v_boundary) THEN
            RAISE EXCEPTION 'change % has been compacted (its original is in simtrail.archive); rewind to a mark or a time instead',
                pg_catalog.substr(p_target, 8) USING ERRCODE = 'invalid_parameter_value';
        END IF;
        SELECT c.xact_id INTO v_straddler FROM simtrail.changes AS c
        WHERE c.tenant_id = p_tenant AND c.id > v_boundary
          AND EXISTS (SELECT 1 FROM simtrail.changes AS e
                      WHERE e.tenant_id = p_tenant AND e.xact_id = c.xact_id AND e.id <= v_boundary
                        AND e.xact_id <> v_change.xact_id)
        LIMIT 1;
        IF v_straddler IS NOT NULL THEN
            RAISE EXCEPTION 'change % falls inside transaction %, which committed around it; pick a change of a later transaction',
                v_change.id, v_straddler USING ERRCODE = 'invalid_parameter_value';
        END IF;
        RETURN pg_catalog.jsonb_build_object(
            'kind', 'change', 'change', v_change.id, 'at', v_change.changed_at,
            'resolved_by', 'change order (exact)',
            'precision', 'exact: the state right after the transaction of that change',
            'predicate', pg_catalog.format('c.tenant_id = %L AND c.id > %s', p_tenant, v_boundary));
    END IF;

    v_time := simtrail.parse_time(p_target);
    IF v_time > pg_catalog.clock_timestamp() THEN
        RAISE EXCEPTION 'time % is in the future', simtrail.iso_time(v_time)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT pg_catalog.min(v.installed_at) INTO v_log_start FROM simtrail.schema_version AS v;
    IF v_time < v_log_start THEN
        RAISE EXCEPTION 'time % is before the log begins (%)', simtrail.iso_time(v_time),
            simtrail.iso_time(v_log_start) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT s.horizon INTO v_horizon FROM simtrail.daemon_state AS s;
    IF v_time < v_horizon THEN
        RAISE EXCEPTION 'time % is before the retention horizon (%): history that old has been dropped',
            simtrail.iso_time(v_time), simtrail.iso_time(v_horizon)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN simtrail.resolve_time(p_tenant, v_time, p_nearest);
END
$$;

-- Columns a rewind may write: not dropped, not generated; identity columns
-- are written with OVERRIDING SYSTEM VALUE, except that updates skip the key
-- and GENERATED ALWAYS identities (which cannot be updated).
CREATE OR REPLACE FUNCTION simtrail.writable_columns(p_relid regclass, p_for_update boolean)
RETURNS text[]
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.array_agg(a.attname::text ORDER BY a.attnum)
    FROM pg_catalog.pg_attribute AS a
    WHERE a.attrelid = p_relid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
      AND NOT (p_for_update AND (a.attidentity = 'a'
               OR a.attname = ANY (coalesce(simtrail.pk_columns(p_relid), ARRAY[]::text[]))))
$$;

-- Columns of the table's unique indexes other than its primary key.
CREATE OR REPLACE FUNCTION simtrail.unique_columns(p_relid regclass)
RETURNS text[]
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(pg_catalog.array_agg(DISTINCT a.attname::text), ARRAY[]::text[])
    FROM pg_catalog.pg_index AS i
    CROSS JOIN LATERAL pg_catalog.unnest(i.indkey::smallint[]) AS k(attnum)
    JOIN pg_catalog.pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
    WHERE i.indrelid = p_relid AND i.indisunique AND NOT i.indisprimary
$$;

-- How far down the foreign-key graph a table sits among the captured tables
-- (0: references none of them). Parents are restored before their children
-- and children deleted before their parents.
CREATE OR REPLACE FUNCTION simtrail.fk_depths()
RETURNS TABLE (table_name text, depth integer)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH RECURSIVE edges AS (
        SELECT DISTINCT k.conrelid AS child, k.confrelid AS parent
        FROM pg_catalog.pg_constraint AS k
        WHERE k.contype = 'f' AND k.conrelid <> k.confrelid
          AND k.conrelid IN (SELECT t.relid FROM simtrail.captured_tables AS t)
          AND k.confrelid IN (SELECT t.relid FROM simtrail.captured_tables AS t)
    ), walk (relid, depth) AS (
        SELECT t.relid, 0 FROM simtrail.captured_tables AS t
        UNION ALL
        SELECT e.child, w.depth + 1 FROM walk AS w JOIN edges AS e ON e.parent = w.relid
        WHERE w.depth < 20
    )
    SELECT t.table_name, pg_catalog.max(w.depth)::integer
    FROM walk AS w JOIN simtrail.captured_tables AS t ON t.relid = w.relid
    GROUP BY t.table_name
$$;

-- Every row of the tenant that changed since TARGET: its image at the target
-- (target_img; NULL when it was not the tenant's then), as the log last saw
-- it (last_img) and as it is now (live_img, live_tenant), with the action a
-- rewind would take. Fills simtrail.rewind_net (rows of this transaction) and
-- returns the resolved target. Rows the log never saw change are as they
-- were at the target, so this is also how the state at a target is read
-- (copies at a target, diff, snapshot export). With p_lock the live rows
-- are locked against the tenant's writers, as a rewind needs. JIT off: the
-- planner prices a long session's scan high enough to compile it, and the
-- compiling took longer than the whole scan (0.6 s of 1.5 s at 300k changes).
CREATE OR REPLACE FUNCTION simtrail.rewind_stage(
    p_tenant text, p_target text, p_force boolean, p_nearest boolean, p_lock boolean)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET jit = off AS $$
DECLARE
    v_resolved jsonb;
    v_missing text;
    r record;
    v_lookup jsonb;
    v_pk_match text;
    v_count bigint;
    v_undone bigint;
    v_predicate text;
    v_call xid8 := pg_catalog.pg_current_xact_id();
BEGIN
    -- A restored cluster is rebased, and a dropped table refused, first.
    PERFORM simtrail.rewind_prepare();
    DELETE FROM simtrail.rewind_keys AS k WHERE k.call_id = v_call;
    DELETE FROM simtrail.rewind_net AS n WHERE n.call_id = v_call;
    v_resolved := simtrail.resolve_target(p_tenant, p_target, p_nearest);
    v_resolved := v_resolved || simtrail.check_capture_gaps(
        coalesce(v_resolved ->> 'cut_at', v_resolved ->> 'at')::timestamptz, p_force);

    v_predicate := v_resolved ->> 'predicate' || simtrail.predicate_filters();
    v_resolved := v_resolved - 'predicate';
    PERFORM simtrail.check_renames(v_predicate);

    -- Each change, seen from this tenant, as one or two per-key events: the
    -- old key (its row before the change) and, when the key changed, the new
    -- key arriving. `code` orders events (id * 2, + 1 for a new key) and says
    -- which side of the change an event stands for. One pass over the log
    -- (and one over the few key changes) keeps only the first and last event
    -- per row; the images of just those are fetched afterwards, so little
    -- beyond the keys is read per change.
    -- `moves` says how the row changed tenant after the target: "entered"
    -- when its first change moved it in (the tenant it came from, or null
    -- for none), "left" when its last change moved it out.
    EXECUTE pg_catalog.format($q$
        WITH g AS (
            SELECT e.table_name, e.key, pg_catalog.min(e.code) AS first_code,
                   pg_catalog.max(e.code) AS last_code,
                   -- Each change once: its old-key event, or an INSERT's only one.
                   pg_catalog.count(*) FILTER (WHERE NOT e.arrival) AS undone
            FROM (
                -- Keys grouped as text: the same key has one text form, and
                -- hashing and comparing it is about half the cost of jsonb's.
                SELECT c.table_name,
                       (CASE c.operation WHEN 'UPDATE' THEN coalesce(c.old_pk, c.row_pk)
                                         ELSE c.row_pk END)::text AS key,
                       c.id * 2 + CASE c.operation WHEN 'INSERT' THEN 1 ELSE 0 END AS code,
                       false AS arrival
                FROM simtrail.changes AS c
                WHERE %1$s
                UNION ALL
                -- The new key of a key change arriving; few rows, read through
                -- an index of their own (version 13).
                SELECT c.table_name, c.row_pk::text, c.id * 2 + 1, true
                FROM simtrail.changes AS c
                WHERE %1$s AND c.old_pk IS NOT NULL AND c.operation = 'UPDATE'
            ) AS e
            GROUP BY 1, 2
        ), kept AS (
            INSERT INTO simtrail.rewind_keys (call_id, table_name, key, target_img, last_img, moves)
            SELECT $1, g.table_name, g.key::jsonb,
                   CASE WHEN g.first_code %% 2 = 0 AND f.moved IS DISTINCT FROM 'in'
                        THEN f.old_data
                        -- Entered from no tenant: it goes back to its image
                        -- before the move, if it is still here.
                        WHEN g.first_code %% 2 = 0 AND src.tenant_id IS NULL
                        THEN f.old_data END,
                   CASE WHEN l.moved IS NOT DISTINCT FROM 'out' THEN NULL
                        WHEN g.last_code %% 2 = 1 THEN l.new_data
                        -- The old-key side of a change: the row is still there
                        -- after it only if the change kept the key.
                        WHEN l.old_pk IS NULL THEN l.new_data END,
                   nullif(CASE WHEN f.moved = 'in'
                               THEN pg_catalog.jsonb_build_object('entered', src.tenant_id)
                               ELSE '{}'::jsonb END
                          || CASE WHEN l.moved = 'out' THEN '{"left": true}'::jsonb ELSE '{}'::jsonb END,
                          '{}'::jsonb)
            FROM g
            -- One probe per row, whatever the estimates: the planner, guessing
            -- far more rows than there are, would otherwise merge-join the
            -- whole log in id order.
            CROSS JOIN LATERAL (SELECT f0.* FROM simtrail.changes AS f0
                                WHERE f0.id = g.first_code / 2 OFFSET 0) AS f
            CROSS JOIN LATERAL (SELECT l0.* FROM simtrail.changes AS l0
                                WHERE l0.id = g.last_code / 2 OFFSET 0) AS l
            -- Where a row that moved in came from: the 'out' half its
            -- transaction logged just before (none when it had no tenant).
            -- Compaction never folds a row's changes around a move, so both
            -- halves are originals.
            LEFT JOIN LATERAL (
                SELECT o.tenant_id FROM simtrail.changes AS o
                WHERE f.moved = 'in' AND o.xact_id = f.xact_id AND o.id < f.id
                  -- A bound, not a filter: the scan runs down from f.id
                  -- and stops at the first match. After a restore an older
                  -- generation's transactions are in transactions_history.
                  AND o.id >= coalesce((SELECT x.first_change_id FROM simtrail.transactions AS x
                                        WHERE x.xact_id = f.xact_id AND x.first_change_id <= f.id),
                                       0)
                  AND o.table_name = f.table_name AND o.row_pk = f.row_pk AND o.moved = 'out'
                ORDER BY o.id DESC LIMIT 1
            ) AS src ON true
            RETURNING 1
        )
        SELECT (SELECT pg_catalog.count(*) FROM kept),
               (SELECT coalesce(pg_catalog.sum(g.undone), 0) FROM g)
        $q$, v_predicate)
    INTO v_count, v_undone USING v_call;
    v_resolved := v_resolved || pg_catalog.jsonb_build_object('changes_undone', v_undone);

    SELECT k.table_name INTO v_missing FROM simtrail.rewind_keys AS k
    WHERE k.call_id = v_call AND k.table_name NOT IN (SELECT t.table_name FROM simtrail.captured_tables AS t) LIMIT 1;
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'the changes to undo include %, which is no longer captured; enable it again first',
            v_missing USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;

    -- Lock and read the live rows, with the tenant each belongs to now. NO KEY
    -- UPDATE, not UPDATE: a writer of this tenant waiting on our tenant lock
    -- may hold KEY SHARE on a parent row it inserted a child for, and that
    -- must not deadlock us.
    FOR r IN
        SELECT t.relid, t.table_name, t.pk_columns, t.tenant_path
        FROM simtrail.captured_tables AS t
        WHERE t.table_name IN (SELECT DISTINCT k.table_name FROM simtrail.rewind_keys AS k
                               WHERE k.call_id = v_call)
        ORDER BY t.table_name
    LOOP
        v_lookup := simtrail.render_tenant_lookup(r.tenant_path, 'r');
        SELECT pg_catalog.string_agg(pg_catalog.format('r.%I = (k.key ->> %L)::%s', a.attname,
                   a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod)), ' AND ')
          INTO v_pk_match
          FROM pg_catalog.unnest(r.pk_columns) AS c
          JOIN pg_catalog.pg_attribute AS a ON a.attrelid = r.relid AND a.attname = c;
        -- Images logged in another session may spell values differently (a
        -- timestamptz in another time zone): where the text differs from the
        -- live row, pass them through the table's own types before comparing.
        -- An image agrees with the live row when every column it holds has
        -- the same value there (columns added since are not compared).
        -- Each key finds its live row through the table's primary key
        -- (LATERAL): linear whatever the work table's statistics claim.
        EXECUTE pg_catalog.format($q$
            INSERT INTO simtrail.rewind_net
                (call_id, table_name, key, target_img, last_img, live_img, live_tenant, action, drift,
                 moves)
            SELECT $2, x.table_name, x.key, x.target_img, x.last_img, x.live_img, x.live_tenant,
                   CASE WHEN x.moves ? 'entered' AND x.target_img IS NOT NULL THEN
                            -- Entered from no tenant: send it back only if it is
                            -- still here; wherever else it went is not ours.
                            CASE WHEN x.live_tenant IS DISTINCT FROM $1 THEN 'keep'
                                 WHEN x.target_img = x.live_img OR NOT EXISTS (
                                     SELECT 1 FROM pg_catalog.jsonb_each(x.target_img) AS e
                                     WHERE x.live_img -> e.key IS DISTINCT FROM e.value) THEN 'keep'
                                 ELSE 'revert' END
                        WHEN x.target_img IS NOT NULL AND x.live_img IS NULL THEN 'restore'
                        WHEN x.target_img IS NOT NULL AND x.live_tenant IS NOT NULL
                             AND x.live_tenant <> $1 THEN 'conflict'
                        WHEN x.target_img IS NOT NULL AND (x.target_img = x.live_img OR NOT EXISTS (
                                 SELECT 1 FROM pg_catalog.jsonb_each(x.target_img) AS e
                                 WHERE x.live_img -> e.key IS DISTINCT FROM e.value)) THEN 'keep'
                        WHEN x.target_img IS NOT NULL THEN 'revert'
                        WHEN x.live_img IS NOT NULL AND x.live_tenant = $1 THEN 'delete'
                        -- It did not exist at the target and left for no
                        -- tenant since: back to not existing. (Left with its
                        -- parent, it would come back with it.)
                        WHEN x.live_img IS NOT NULL AND x.live_tenant IS NULL AND x.moves ? 'left'
                        THEN 'delete'
                        ELSE 'keep' END,
                   -- The live row must be what the log last said it was;
                   -- otherwise someone wrote with the capture triggers off.
                   CASE WHEN x.last_img IS NOT NULL THEN
                            x.live_img IS NULL OR x.live_tenant IS DISTINCT FROM $1
                            OR (x.last_img <> x.live_img AND EXISTS (
                                    SELECT 1 FROM pg_catalog.jsonb_each(x.last_img) AS e
                                    WHERE x.live_img -> e.key IS DISTINCT FROM e.value))
                        -- A row of no tenant now (live_tenant NULL) is not ours.
                        ELSE x.live_img IS NOT NULL AND x.live_tenant IS NOT DISTINCT FROM $1 END,
                   x.moves
            FROM (
                SELECT k.table_name, k.key, s.img AS live_img, s.tenant AS live_tenant, k.moves,
                       CASE WHEN k.target_img <> s.img THEN
                           (SELECT pg_catalog.jsonb_object_agg(e.key, e.value)
                            FROM pg_catalog.jsonb_each(pg_catalog.to_jsonb(
                                     pg_catalog.jsonb_populate_record(NULL::%1$s, k.target_img))) AS e
                            WHERE k.target_img ? e.key)
                        ELSE k.target_img END AS target_img,
                       CASE WHEN k.last_img <> s.img THEN
                           (SELECT pg_catalog.jsonb_object_agg(e.key, e.value)
                            FROM pg_catalog.jsonb_each(pg_catalog.to_jsonb(
                                     pg_catalog.jsonb_populate_record(NULL::%1$s, k.last_img))) AS e
                            WHERE k.last_img ? e.key)
                        ELSE k.last_img END AS last_img
                FROM simtrail.rewind_keys AS k
                LEFT JOIN LATERAL (SELECT pg_catalog.to_jsonb(r.*) AS img, %4$s AS tenant
                                   FROM %1$s AS r%5$s
                                   WHERE %2$s%6$s) AS s ON true
                WHERE k.call_id = $2 AND k.table_name = %3$L
                -- A fence: computed once per row, not once per use above.
                OFFSET 0
            ) AS x
            $q$, r.relid::regclass, v_pk_match, r.table_name, v_lookup ->> 'tenant',
            v_lookup ->> 'joins', CASE WHEN p_lock THEN ' FOR NO KEY UPDATE OF r' ELSE '' END)
        USING p_tenant, v_call;
    END LOOP;
    DELETE FROM simtrail.rewind_keys AS k WHERE k.call_id = v_call;
    RETURN v_resolved;
END
$$;

-- Work out a rewind: what each touched row must become, what it is now, and
-- what to do about it (rewind_stage, locking the live rows). Raises,
-- changing nothing, on a cross-tenant move or (unless forced) drift.
CREATE OR REPLACE FUNCTION simtrail.rewind_plan(
    p_tenant text, p_target text, p_force boolean, p_nearest boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET jit = off AS $$
DECLARE
    v_resolved jsonb;
    r record;
    v_pk_match text;
    v_problem text;
    v_count bigint;
    v_returned bigint;
    v_call xid8 := pg_catalog.pg_current_xact_id();
BEGIN
    v_resolved := simtrail.rewind_stage(p_tenant, p_target, p_force, p_nearest, true);

    SELECT pg_catalog.count(*),
           pg_catalog.string_agg(pg_catalog.format('%s %s (now in tenant %s)', n.table_name, n.key,
                                                   n.live_tenant), '; ')
      INTO v_count, v_problem
    FROM (SELECT * FROM simtrail.rewind_net AS n0 WHERE n0.call_id = v_call AND n0.action = 'conflict'
          ORDER BY n0.table_name, n0.key::text LIMIT 5) AS n;
    IF v_count > 0 THEN
        SELECT pg_catalog.count(*) INTO v_count FROM simtrail.rewind_net AS n
        WHERE n.call_id = v_call AND n.action = 'conflict';
        RAISE EXCEPTION 'refused: % row(s) left tenant % for another tenant and still live there, so restoring them would change that tenant: %',
            v_count, p_tenant, v_problem USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;

    -- Rows that left for no tenant come back with the rows that reach their
    -- tenant through them. One added while its parent had no tenant was
    -- never this tenant's: it would come in too, and deleting it would
    -- destroy data no tenant's history holds. Refused, even when forced.
    FOR r IN
        SELECT t.relid, t.table_name, t.pk_columns, t.tenant_path -> 'hops' -> 0 AS hop
        FROM simtrail.captured_tables AS t
        WHERE t.tenant_path -> 'hops' -> 0 ->> 'parent' IN (
            SELECT n.table_name FROM simtrail.rewind_net AS n
            WHERE n.call_id = v_call AND n.live_img IS NOT NULL AND n.live_tenant IS NULL AND n.target_img IS NOT NULL)
        ORDER BY t.table_name
    LOOP
        SELECT pg_catalog.string_agg(pg_catalog.format('%L, c.%I', x, x), ', ')
          INTO v_pk_match FROM pg_catalog.unnest(r.pk_columns) AS x;
        EXECUTE pg_catalog.format($q$
            SELECT pg_catalog.count(*), pg_catalog.string_agg(%1$L || ' ' || z.pk::text, '; ')
            FROM (SELECT y.pk FROM (
                      SELECT pg_catalog.jsonb_build_object(%2$s) AS pk FROM %3$s AS c
                      WHERE pg_catalog.to_jsonb(c.%4$I) IN (
                          SELECT n.target_img -> %5$L FROM simtrail.rewind_net AS n
                          WHERE n.call_id = %7$L::xid8 AND n.table_name = %6$L
                            AND n.live_img IS NOT NULL
                            AND n.live_tenant IS NULL AND n.target_img IS NOT NULL
                            AND NOT coalesce(n.moves ? 'entered', false))) AS y
                  WHERE NOT EXISTS (SELECT 1 FROM simtrail.rewind_net AS k
                                    WHERE k.call_id = %7$L::xid8 AND k.table_name = %1$L
                                      AND k.key = y.pk)
                  ORDER BY y.pk::text LIMIT 5) AS z
            $q$, r.table_name, v_pk_match, r.relid::regclass, r.hop ->> 'column',
            r.hop ->> 'parent_column', r.hop ->> 'parent', v_call)
        INTO v_count, v_problem;
        IF v_count > 0 THEN
            RAISE EXCEPTION 'refused: row(s) of no tenant were added under rows that left tenant % since the target; those rows come back, and would bring these in too: %; delete or move them first',
                p_tenant, v_problem USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
    END LOOP;

    -- Rows that entered from another class since the target: deleting them
    -- from this tenant loses that class's data unless it rewinds too.
    SELECT pg_catalog.count(*) FILTER (WHERE n.moves ->> 'entered' IS NOT NULL AND n.action = 'delete'),
           pg_catalog.count(*) FILTER (WHERE n.moves ->> 'entered' IS NULL AND n.target_img IS NOT NULL
                                         AND n.live_tenant IS NOT DISTINCT FROM p_tenant)
      INTO v_count, v_returned
    FROM simtrail.rewind_net AS n
    WHERE n.call_id = v_call AND n.moves ? 'entered';
    v_resolved := v_resolved || pg_catalog.jsonb_build_object(
        'moved_in', pg_catalog.jsonb_build_object('deleted', v_count, 'returned', v_returned));
    IF v_count > 0 AND NOT p_force THEN
        SELECT pg_catalog.string_agg(pg_catalog.format('%s %s (from tenant %s)', n.table_name, n.key,
                                                       n.moves ->> 'entered'), '; ')
          INTO v_problem
        FROM (SELECT n0.table_name, n0.key, n0.moves FROM simtrail.rewind_net AS n0
              WHERE n0.call_id = v_call AND n0.moves ->> 'entered' IS NOT NULL AND n0.action = 'delete'
              ORDER BY n0.table_name, n0.key::text LIMIT 5) AS n;
        RAISE EXCEPTION 'refused: % row(s) entered tenant % from another tenant after the target, and rewinding would delete them here: %; rewind with force to delete them (their old tenant is left as it is)',
            v_count, p_tenant, v_problem USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;

    IF NOT p_force THEN
        SELECT pg_catalog.string_agg(pg_catalog.format('%s %s', n.table_name, n.key), '; ')
          INTO v_problem
        FROM (SELECT * FROM simtrail.rewind_net AS n0 WHERE n0.call_id = v_call AND n0.drift
              ORDER BY n0.table_name, n0.key::text LIMIT 5) AS n;
        IF v_problem IS NOT NULL THEN
            SELECT pg_catalog.count(*) INTO v_count FROM simtrail.rewind_net AS n
            WHERE n.call_id = v_call AND n.drift;
            RAISE EXCEPTION 'refused: % row(s) differ from their last logged image (written with capture off?): %; rewind with force to overwrite them',
                v_count, v_problem USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
    END IF;
    RETURN v_resolved;
END
$$;

-- Apply the plan in simtrail.rewind_net (this transaction's rows), set-based, one statement per table
-- and action. Returns the mode used.
CREATE OR REPLACE FUNCTION simtrail.rewind_apply(p_tenant text)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET jit = off AS $$
DECLARE
    v_mode text := 'replica';
    r record;
    c record;
    v_pk_match text;
    v_columns text[];
    v_list text;
    v_values text;
    v_bad bigint;
    v_call xid8 := pg_catalog.pg_current_xact_id();
    v_net text;
BEGIN
    -- This call's plan, as a relation the generated statements read.
    v_net := pg_catalog.format(
        '(SELECT n0.* FROM simtrail.rewind_net AS n0 WHERE n0.call_id = %L::pg_catalog.xid8)', v_call);
    -- Replica mode keeps the application's own triggers (updated_at
    -- stampers, tenant fillers, identifier guards) and FK actions from
    -- altering restored rows; our capture triggers are ENABLE ALWAYS and
    -- still log every change. Foreign keys are checked below instead.
    BEGIN
        PERFORM pg_catalog.set_config('session_replication_role', 'replica', true);
    EXCEPTION WHEN insufficient_privilege THEN
        -- Without replica mode the application's triggers would rewrite
        -- restored rows (updated_at, tenant fillers): refuse rather than be
        -- inexact. The install role must be a superuser or, on Supabase, the
        -- postgres role, which may set this parameter.
        RAISE EXCEPTION 'refused: the role owning simtrail (%) may not set session_replication_role, which an exact rewind needs; a superuser must run: GRANT SET ON PARAMETER session_replication_role TO %',
            current_user, pg_catalog.quote_ident(current_user) USING ERRCODE = 'insufficient_privilege';
    END;

    FOR r IN
        SELECT t.relid, t.table_name, t.pk_columns, coalesce(d.depth, 0) AS depth
        FROM simtrail.captured_tables AS t
        LEFT JOIN simtrail.fk_depths() AS d ON d.table_name = t.table_name
        WHERE t.table_name IN (SELECT n.table_name FROM simtrail.rewind_net AS n
                               WHERE n.call_id = v_call AND n.action IN ('delete', 'revert', 'restore'))
        ORDER BY 4 DESC, 2
    LOOP
        SELECT pg_catalog.string_agg(pg_catalog.format('r.%I = k.%I', x, x), ' AND ')
          INTO v_pk_match FROM pg_catalog.unnest(r.pk_columns) AS x;
        EXECUTE pg_catalog.format(
            'DELETE FROM %1$s AS r USING (SELECT j.* FROM %4$s AS n'
            ' CROSS JOIN LATERAL pg_catalog.jsonb_populate_record(NULL::%1$s, n.key) AS j WHERE n.table_name = %2$L AND n.action = ''delete'') AS k'
            ' WHERE %3$s', r.relid::regclass, r.table_name, v_pk_match, v_net);
    END LOOP;

    FOR r IN
        SELECT t.relid, t.table_name, t.pk_columns, coalesce(d.depth, 0) AS depth
        FROM simtrail.captured_tables AS t
        LEFT JOIN simtrail.fk_depths() AS d ON d.table_name = t.table_name
        WHERE t.table_name IN (SELECT n.table_name FROM simtrail.rewind_net AS n
                               WHERE n.call_id = v_call AND n.action IN ('revert', 'restore'))
        ORDER BY 4, 2
    LOOP
        SELECT pg_catalog.string_agg(pg_catalog.format('r.%I = k.%I', x, x), ' AND ')
          INTO v_pk_match FROM pg_catalog.unnest(r.pk_columns) AS x;
        -- Images taken before a column was added lack it: group rows by the
        -- columns their images hold, so a restored row takes the column's
        -- default and a reverted one keeps its live value.
        -- Setting a column of a unique key makes UPDATE lock the row
        -- exclusively even when the value stays the same, which would collide
        -- with a waiting writer's KEY SHARE lock: such columns are only set on
        -- rows where they really change.
        FOR c IN
            SELECT g.action, g.keys, g.key_changed FROM (
                SELECT n.action,
                       (SELECT pg_catalog.array_agg(e ORDER BY e)
                        FROM pg_catalog.jsonb_object_keys(n.target_img) AS e) AS keys,
                       n.action = 'revert' AND EXISTS (
                           SELECT 1 FROM pg_catalog.unnest(simtrail.unique_columns(r.relid)) AS u
                           WHERE n.target_img -> u IS DISTINCT FROM n.live_img -> u) AS key_changed
                FROM simtrail.rewind_net AS n
                WHERE n.call_id = v_call AND n.table_name = r.table_name
                  AND n.action IN ('revert', 'restore')) AS g
            GROUP BY g.action, g.keys, g.key_changed
            ORDER BY g.action DESC
        LOOP
            SELECT pg_catalog.array_agg(w ORDER BY o) INTO v_columns
            FROM pg_catalog.unnest(simtrail.writable_columns(r.relid, c.action = 'revert'))
                 WITH ORDINALITY AS u(w, o)
            WHERE w = ANY (c.keys)
              AND (c.action = 'restore' OR c.key_changed
                   OR w <> ALL (simtrail.unique_columns(r.relid)));
            IF v_columns IS NULL THEN
                CONTINUE;
            END IF;
            SELECT pg_catalog.string_agg(pg_catalog.format('%I', w), ', '),
                   pg_catalog.string_agg(pg_catalog.format('k.%I', w), ', ')
              INTO v_list, v_values FROM pg_catalog.unnest(v_columns) AS w;
            IF c.action = 'revert' THEN
                EXECUTE pg_catalog.format(
                    'UPDATE %1$s AS r SET (%4$s) = ROW(%5$s)'
                    ' FROM (SELECT j.* FROM %9$s AS n'
                    '       CROSS JOIN LATERAL pg_catalog.jsonb_populate_record(NULL::%1$s, n.target_img) AS j'
                    '       WHERE n.table_name = %2$L'
                    '         AND n.action = ''revert'' AND (SELECT pg_catalog.array_agg(e ORDER BY e)'
                    '             FROM pg_catalog.jsonb_object_keys(n.target_img) AS e) = %6$L'
                    '         AND EXISTS (SELECT 1 FROM pg_catalog.unnest(%7$L::text[]) AS u'
                    '             WHERE n.target_img -> u IS DISTINCT FROM n.live_img -> u) = %8$L) AS k'
                    ' WHERE %3$s',
                    r.relid::regclass, r.table_name, v_pk_match, v_list, v_values, c.keys,
                    simtrail.unique_columns(r.relid), c.key_changed, v_net);
            ELSE
                EXECUTE pg_catalog.format(
                    'INSERT INTO %1$s AS r (%3$s) OVERRIDING SYSTEM VALUE SELECT %4$s'
                    ' FROM (SELECT j.* FROM %6$s AS n'
                    '       CROSS JOIN LATERAL pg_catalog.jsonb_populate_record(NULL::%1$s, n.target_img) AS j'
                    '       WHERE n.table_name = %2$L'
                    '         AND n.action = ''restore'' AND (SELECT pg_catalog.array_agg(e ORDER BY e)'
                    '             FROM pg_catalog.jsonb_object_keys(n.target_img) AS e) = %5$L) AS k',
                    r.relid::regclass, r.table_name, v_list, v_values, c.keys, v_net);
            END IF;
        END LOOP;
    END LOOP;

    PERFORM pg_catalog.set_config('session_replication_role', 'origin', true);
    PERFORM simtrail.rewind_check_foreign_keys();
    RETURN v_mode;
END
$$;

-- Replica mode skipped foreign-key checks; make them for what the rewind
-- touched. Rows it wrote must find their parents, and no row anywhere
-- (untracked tables included) may point at a row it removed.
-- JIT off: with nested loops disabled (below) every plan costs more than
-- JIT's threshold, and compiling it costs far more than running it.
CREATE OR REPLACE FUNCTION simtrail.rewind_check_foreign_keys()
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET jit = off AS $$
DECLARE
    k record;
    v_join text;
    v_parent_match text;
    v_not_null text;
    v_child_pk text;
    v_bad bigint;
    v_call xid8 := pg_catalog.pg_current_xact_id();
    v_net text;
    v_indexed boolean;
    v_nestloop text;
BEGIN
    v_net := pg_catalog.format(
        '(SELECT n0.* FROM simtrail.rewind_net AS n0 WHERE n0.call_id = %L::pg_catalog.xid8)', v_call);
    FOR k IN
        SELECT con.conname, con.conrelid::regclass AS child, con.confrelid::regclass AS parent,
               tc.table_name AS child_name, tc.pk_columns AS child_pk, tp.table_name AS parent_name,
               ARRAY(SELECT a.attname::text
                     FROM pg_catalog.unnest(con.conkey) WITH ORDINALITY AS x(n, o)
                     JOIN pg_catalog.pg_attribute AS a ON a.attrelid = con.conrelid AND a.attnum = x.n
                     ORDER BY x.o) AS child_cols,
               ARRAY(SELECT a.attname::text
                     FROM pg_catalog.unnest(con.confkey) WITH ORDINALITY AS x(n, o)
                     JOIN pg_catalog.pg_attribute AS a ON a.attrelid = con.confrelid AND a.attnum = x.n
                     ORDER BY x.o) AS parent_cols
        FROM pg_catalog.pg_constraint AS con
        LEFT JOIN simtrail.captured_tables AS tc ON tc.relid = con.conrelid
        LEFT JOIN simtrail.captured_tables AS tp ON tp.relid = con.confrelid
        WHERE con.contype = 'f'
          AND (tc.table_name IN (SELECT n.table_name FROM simtrail.rewind_net AS n
                                 WHERE n.call_id = v_call AND n.action IN ('revert', 'restore'))
               OR tp.table_name IN (SELECT n.table_name FROM simtrail.rewind_net AS n
                                    WHERE n.call_id = v_call AND n.action IN ('revert', 'delete')))
    LOOP
        SELECT pg_catalog.string_agg(pg_catalog.format('p.%I = c.%I', pc, cc), ' AND '),
               pg_catalog.string_agg(pg_catalog.format('c.%I IS NOT NULL', cc), ' AND '),
               pg_catalog.string_agg(pg_catalog.format('c.%I = k.%I', cc, pc), ' AND ')
          INTO v_parent_match, v_not_null, v_join
          FROM ROWS FROM (pg_catalog.unnest(k.parent_cols), pg_catalog.unnest(k.child_cols)) AS z(pc, cc);

        IF k.child_name IS NOT NULL THEN
            SELECT pg_catalog.string_agg(pg_catalog.format('c.%I = w.%I', x, x), ' AND ')
              INTO v_child_pk FROM pg_catalog.unnest(k.child_pk) AS x;
            EXECUTE pg_catalog.format(
                'SELECT pg_catalog.count(*) FROM %7$s AS n'
                ' CROSS JOIN LATERAL pg_catalog.jsonb_populate_record(NULL::%1$s, n.key) AS w'
                ' JOIN %1$s AS c ON %3$s'
                ' WHERE n.table_name = %2$L AND n.action IN (''revert'', ''restore'') AND %4$s'
                ' AND NOT EXISTS (SELECT 1 FROM %5$s AS p WHERE %6$s)',
                k.child, k.child_name, v_child_pk, v_not_null, k.parent, v_parent_match, v_net)
            INTO v_bad;
            IF v_bad > 0 THEN
                RAISE EXCEPTION 'refused: % restored row(s) of % would point at % rows that no longer exist (foreign key %)',
                    v_bad, k.child, k.parent, k.conname USING ERRCODE = 'foreign_key_violation';
            END IF;
        END IF;

        IF k.parent_name IS NOT NULL THEN
            -- Without an index on the child's referencing columns the only
            -- linear plan scans the child once (a hash join); the planner,
            -- believing the work table empty, would rescan it per removed row.
            SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index AS i
                           WHERE i.indrelid = k.child
                             AND (i.indkey::pg_catalog.int2[])[0:pg_catalog.cardinality(k.child_cols) - 1]
                                 @> (SELECT pg_catalog.array_agg(a.attnum) FROM pg_catalog.pg_attribute AS a
                                     WHERE a.attrelid = k.child AND a.attname = ANY (k.child_cols)))
              INTO v_indexed;
            v_nestloop := pg_catalog.current_setting('enable_nestloop');
            IF NOT v_indexed THEN
                PERFORM pg_catalog.set_config('enable_nestloop', 'off', true);
            END IF;
            EXECUTE pg_catalog.format(
                'SELECT pg_catalog.count(*) FROM %1$s AS c'
                ' JOIN (SELECT DISTINCT j.* FROM %6$s AS n'
                '       CROSS JOIN LATERAL pg_catalog.jsonb_populate_record(NULL::%2$s, n.live_img) AS j'
                '       WHERE n.table_name = %3$L AND n.action IN (''revert'', ''delete'')) AS k ON %4$s'
                ' WHERE NOT EXISTS (SELECT 1 FROM %2$s AS p WHERE %5$s)',
                k.child, k.parent, k.parent_name, v_join, v_parent_match, v_net)
            INTO v_bad;
            PERFORM pg_catalog.set_config('enable_nestloop', v_nestloop, true);
            IF v_bad > 0 THEN
                RAISE EXCEPTION 'refused: % row(s) of % would point at % rows this rewind removes (foreign key %)',
                    v_bad, k.child, k.parent, k.conname USING ERRCODE = 'foreign_key_violation';
            END IF;
        END IF;
    END LOOP;
END
$$;

-- The part of a rewind done under the tenant's lock (see with_tenant_lock):
-- plan, and unless a dry run, apply. p_args: tenant, target, dry_run,
-- force, nearest.
CREATE OR REPLACE FUNCTION simtrail.rewind_locked(p_args jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET jit = off AS $$
DECLARE
    v_tenant text := p_args ->> 'tenant';
    v_resolved jsonb;
    v_rewind_id bigint;
    v_mode text;
BEGIN
    v_resolved := simtrail.rewind_plan(v_tenant, p_args ->> 'target', (p_args ->> 'force')::boolean,
                                       (p_args ->> 'nearest')::boolean);
    IF NOT (p_args ->> 'dry_run')::boolean THEN
        INSERT INTO simtrail.rewinds (tenant_id, target) VALUES (v_tenant, p_args ->> 'target')
        RETURNING id INTO v_rewind_id;
        v_mode := simtrail.rewind_apply(v_tenant);
    END IF;
    RETURN pg_catalog.jsonb_build_object('resolved', v_resolved, 'rewind_id', v_rewind_id,
                                         'mode', v_mode);
END
$$;

-- Put a tenant back to TARGET (mark:NAME, change:ID, or an ISO-8601 time),
-- in this transaction. With p_dry_run it only reports the plan; with
-- p_nearest a time that no cut resolves exactly falls back to the nearest
-- earlier one (the report's precision says so). Callable over RPC by
-- privileged roles; retries when the tenant's writers hold locks.
CREATE OR REPLACE FUNCTION simtrail.rewind(
    p_tenant text, p_target text, p_dry_run boolean, p_force boolean, p_nearest boolean)
RETURNS jsonb
-- extra_float_digits: below 1 a float passes through text (images) rounded.
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET extra_float_digits = 1 AS $$
DECLARE
    v_started timestamptz := pg_catalog.clock_timestamp();
    v_tenant text := simtrail.known_tenant(p_tenant);
    v_locked jsonb;
    v_attempt integer;
    v_resolved jsonb;
    v_mode text;
    v_rewind_id bigint;
    v_tables jsonb;
    v_undone bigint;
    v_moved_in jsonb;
    v_report jsonb;
BEGIN
    v_locked := simtrail.with_tenant_lock(
        v_tenant, 'simtrail.rewind_locked(jsonb)'::regprocedure,
        pg_catalog.jsonb_build_object('tenant', v_tenant, 'target', p_target, 'dry_run', p_dry_run,
                                      'force', p_force, 'nearest', p_nearest));
    v_resolved := v_locked -> 'resolved';
    v_rewind_id := (v_locked ->> 'rewind_id')::bigint;
    v_mode := v_locked ->> 'mode';
    v_attempt := (v_locked ->> 'attempts')::integer;

    v_undone := (v_resolved ->> 'changes_undone')::bigint;
    v_moved_in := v_resolved -> 'moved_in';
    v_resolved := v_resolved - 'changes_undone' - 'moved_in';
    SELECT coalesce(pg_catalog.jsonb_object_agg(x.table_name, pg_catalog.jsonb_build_object(
               'deleted', x.deleted, 'restored', x.restored, 'reverted', x.reverted)), '{}')
      INTO v_tables
    FROM (SELECT n.table_name,
                 pg_catalog.count(*) FILTER (WHERE n.action = 'delete') AS deleted,
                 pg_catalog.count(*) FILTER (WHERE n.action = 'restore') AS restored,
                 pg_catalog.count(*) FILTER (WHERE n.action = 'revert') AS reverted
          FROM simtrail.rewind_net AS n WHERE n.call_id = pg_catalog.pg_current_xact_id()
          GROUP BY 1 ORDER BY 1) AS x
    WHERE x.deleted + x.restored + x.reverted > 0;

    v_report := pg_catalog.jsonb_build_object(
        'tenant', v_tenant,
        'target', p_target,
        'resolved', v_resolved,
        'precision', v_resolved -> 'precision',
        'dry_run', p_dry_run,
        'forced', p_force,
        'changes_undone', v_undone,
        -- Rows that entered since the target: from other tenants (deleted,
        -- forced) and from no tenant (sent back to no tenant).
        'moved_in', v_moved_in,
        'rows_drifted', (SELECT pg_catalog.count(*) FROM simtrail.rewind_net AS n
                         WHERE n.call_id = pg_catalog.pg_current_xact_id() AND n.drift),
        'tables', v_tables,
        'totals', (SELECT pg_catalog.jsonb_build_object(
                       'deleted', pg_catalog.count(*) FILTER (WHERE n.action = 'delete'),
                       'restored', pg_catalog.count(*) FILTER (WHERE n.action = 'restore'),
                       'reverted', pg_catalog.count(*) FILTER (WHERE n.action = 'revert'))
                   FROM simtrail.rewind_net AS n
                   WHERE n.call_id = pg_catalog.pg_current_xact_id()),
        'mode', v_mode,
        'rewind_id', v_rewind_id,
        'attempts', v_attempt,
        'duration_ms', pg_catalog.round(EXTRACT(epoch FROM pg_catalog.clock_timestamp() - v_started)
                                        * 1000, 1));
    IF v_rewind_id IS NOT NULL THEN
        UPDATE simtrail.rewinds SET report = v_report WHERE id = v_rewind_id;
        -- Tag the rewind's own changes (I6).
        UPDATE simtrail.transactions SET rewind_id = v_rewind_id
        WHERE xact_id = pg_catalog.pg_current_xact_id();
    END IF;
    DELETE FROM simtrail.rewind_net AS n WHERE n.call_id = pg_catalog.pg_current_xact_id();
    RETURN v_report;
END
$$;

-- The signature callers (and their GRANTs) already use: no nearest fallback.
CREATE OR REPLACE FUNCTION simtrail.rewind(
    p_tenant text, p_target text, p_dry_run boolean DEFAULT true, p_force boolean DEFAULT false)
RETURNS jsonb
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT simtrail.rewind(p_tenant, p_target, p_dry_run, p_force, false)
$$;

-- Row count and checksum per captured table of one tenant's live rows: what
-- the demo and the tests compare before a session, after it and after a
-- rewind. Reads every captured table; meant for checks, not hot paths.
CREATE OR REPLACE FUNCTION simtrail.tenant_state(p_tenant text)
RETURNS TABLE (table_name text, row_count bigint, checksum text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET extra_float_digits = 1 AS $$
DECLARE
    v_tenant text := simtrail.normalize_tenant(p_tenant);
    r record;
    v_lookup jsonb;
BEGIN
    -- A dropped table (not yet retired) has no rows to count.
    FOR r IN SELECT t.relid, t.table_name, t.tenant_path FROM simtrail.captured_tables AS t
             WHERE pg_catalog.to_regclass(t.table_name)::oid = t.relid
             ORDER BY t.table_name LOOP
        v_lookup := simtrail.render_tenant_lookup(r.tenant_path, 'r');
        table_name := r.table_name;
        EXECUTE pg_catalog.format(
            'SELECT pg_catalog.count(*), pg_catalog.md5(coalesce(pg_catalog.string_agg('
            'pg_catalog.to_jsonb(r.*)::text, E''\n'' ORDER BY pg_catalog.to_jsonb(r.*)::text), ''''))'
            ' FROM %s AS r%s WHERE %s = $1',
            r.relid::regclass, v_lookup ->> 'joins', v_lookup ->> 'tenant')
        INTO row_count, checksum USING v_tenant;
        RETURN NEXT;
    END LOOP;
END
$$;
