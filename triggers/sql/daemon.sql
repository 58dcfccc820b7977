-- What the daemon runs: ticks, compaction into net changes with the
-- originals archived, retention, and the figures behind /metrics.
-- Re-applied by every install (CREATE OR REPLACE), after the versioned files.
-- Every function pins search_path to `pg_catalog, pg_temp`: an empty path
-- would search the caller's pg_temp first for types and relations, so a temp
-- domain named `text` or `jsonb` could run the caller's code as our owner.

-- The smallest change id a rewind to this snapshot must look at: changes of
-- transactions still running when it was taken may sit below the newest id.
CREATE OR REPLACE FUNCTION simtrail.scan_from(p_snapshot pg_snapshot)
RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT LEAST(
               (SELECT pg_catalog.min(x.first_change_id) FROM simtrail.transactions AS x
                WHERE x.xact_id IN (SELECT pg_catalog.pg_snapshot_xip(p_snapshot))),
               (SELECT s.last_value + 1 FROM simtrail.change_id_seq AS s))
$$;

-- scan_from as it stands now. When the snapshot was taken, the transactions
-- still running had not committed their simtrail.transactions rows, so
-- scan_from could not see where they began; once they have committed, it can.
-- Running transactions are those in the snapshot's xip list and those at or
-- above its xmax (a snapshot lists only running ids below xmax); of the
-- latter, only ones that began before p_scan_from matter.
CREATE OR REPLACE FUNCTION simtrail.effective_scan_from(p_scan_from bigint, p_snapshot pg_snapshot)
RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT LEAST(p_scan_from,
                 (SELECT pg_catalog.min(x.first_change_id) FROM simtrail.transactions AS x
                  WHERE x.xact_id IN (SELECT pg_catalog.pg_snapshot_xip(p_snapshot))),
                 (SELECT pg_catalog.min(x.first_change_id) FROM simtrail.transactions AS x
                  WHERE x.xact_id >= pg_catalog.pg_snapshot_xmax(p_snapshot)
                    AND x.first_change_id < p_scan_from))
$$;

-- Record the time with the snapshot that goes with it, and how soon the
-- next tick is promised (p_promise; NULL promises nothing). A time target up
-- to p_promise after this tick resolves to it "exact to the tick".
CREATE OR REPLACE FUNCTION simtrail.tick(p_promise interval)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_snapshot pg_snapshot := pg_catalog.pg_current_snapshot();
    v_tick record;
BEGIN
    IF p_promise <= interval '0' THEN
        RAISE EXCEPTION 'a tick promise must be a positive interval' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO simtrail.ticks (snapshot, scan_from, promise)
    VALUES (v_snapshot, simtrail.scan_from(v_snapshot), p_promise)
    RETURNING id, at INTO v_tick;
    RETURN pg_catalog.jsonb_build_object('id', v_tick.id, 'at', v_tick.at, 'promise', p_promise);
END
$$;

-- A tick taken by hand: a cut point that promises no next tick, so it makes
-- only times at or quietly after it exact.
CREATE OR REPLACE FUNCTION simtrail.tick()
RETURNS jsonb
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT simtrail.tick(NULL::interval)
$$;

-- Keep every tick inside the fine window; older, keep the first tick of
-- each p_keep_every bucket. Returns how many ticks went. Records where it
-- thinned, so a time there resolves to the coarse tick and says so.
CREATE OR REPLACE FUNCTION simtrail.thin_ticks(p_window interval, p_keep_every interval)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_deleted bigint;
BEGIN
    IF p_keep_every <= interval '0' THEN
        RETURN 0;
    END IF;
    DELETE FROM simtrail.ticks AS t
    WHERE t.at < pg_catalog.clock_timestamp() - p_window
      AND t.id NOT IN (
          SELECT DISTINCT ON (pg_catalog.date_bin(p_keep_every, k.at, 'epoch'::timestamptz)) k.id
          FROM simtrail.ticks AS k
          WHERE k.at < pg_catalog.clock_timestamp() - p_window
          ORDER BY pg_catalog.date_bin(p_keep_every, k.at, 'epoch'::timestamptz), k.at, k.id);
    GET DIAGNOSTICS v_deleted = ROW_COUNT;
    UPDATE simtrail.daemon_state
    SET thinned_before = GREATEST(thinned_before, pg_catalog.clock_timestamp() - p_window),
        coarse_every = GREATEST(coarse_every, p_keep_every);
    RETURN v_deleted;
END
$$;

-- Archive partitions, one per UTC day, for every day in [p_from, p_to].
CREATE OR REPLACE FUNCTION simtrail.ensure_archive_partitions(p_from timestamptz, p_to timestamptz)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_day timestamptz := pg_catalog.date_trunc('day', p_from, 'UTC');
    v_name text;
    v_created integer := 0;
BEGIN
    WHILE v_day <= p_to LOOP
        v_name := 'archive_' || pg_catalog.to_char(v_day AT TIME ZONE 'UTC', 'YYYYMMDD');
        IF pg_catalog.to_regclass(pg_catalog.format('simtrail.%I', v_name)) IS NULL THEN
            EXECUTE pg_catalog.format(
                'CREATE TABLE simtrail.%I PARTITION OF simtrail.archive FOR VALUES FROM (%L) TO (%L)',
                v_name, v_day, v_day + interval '1 day');
            EXECUTE pg_catalog.format('REVOKE ALL ON simtrail.%I FROM PUBLIC', v_name);
            v_created := v_created + 1;
        END IF;
        v_day := v_day + interval '1 day';
    END LOOP;
    RETURN v_created;
END
$$;

-- One batch of compaction, in the caller's transaction: the changes with
-- ids in [compacted_below, compacted_below + p_batch) that every reader
-- already saw before the newest tick older than p_window.
--
-- A cut point is a tick still kept or one of the tenant's marks. Each change
-- belongs to the first cut point whose snapshot sees it. Within one batch,
-- the changes of one row between the same two cut points become one net
-- change: the image before the first of them and the image after the last.
-- It takes the id and transaction of that last change, so a rewind to any
-- cut point selects it exactly when it selected the originals, in the same
-- order among the row's other changes (a row's changes are ordered by id).
-- A net change of a single original would be that original: it stays.
-- Tables with a primary-key change between two cut points keep those
-- changes as they are, because one change there speaks for two keys.
-- The originals move to simtrail.archive.
CREATE OR REPLACE FUNCTION simtrail.compact_batch(p_window interval, p_batch integer)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
-- Hashing a batch by row spills to disk at the default work_mem; JIT only
-- adds compile time to statements this size. A generic plan would not know
-- how many changes the batch's arrays hold (it guesses ten) and joins them
-- by nested loops over whole batches: every batch is planned for its sizes.
-- Every join here is between sets of thousands of rows, where a nested loop
-- (chosen on a low estimate of a filtered CTE) is quadratic. Grouping a
-- batch by sorting on its jsonb keys costs more than the rest of the
-- grouping, yet the planner, expecting few groups, would sort; the first
-- cut point of a transaction is read off the cuts' index instead of sorting
-- them. (The one sort left, numbering the cuts, has no other plan.)
SET work_mem = '64MB' SET jit = off SET plan_cache_mode = force_custom_plan
SET enable_nestloop = off SET enable_sort = off AS $$
DECLARE
    v_frontier record;
    v_lo bigint;
    v_hi bigint;
    v_span_lo timestamptz;
    v_span_hi timestamptz;
    v_member_ids bigint[];
    v_member_nets bigint[];
    v_member_froms bigint[];
    v_member_counts integer[];
    v_scanned bigint;
    v_archived bigint;
    v_net bigint;
    v_gen integer;
    v_current boolean;
    v_later boolean;
    v_call xid8 := pg_catalog.pg_current_xact_id();
    v_unsealed bigint;
BEGIN
    IF p_batch IS NULL OR p_batch < 1 THEN
        RAISE EXCEPTION 'a compaction batch must hold at least one change'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Compaction and retention rewrite a tenant's log; a rewind must not read
    -- it half-rewritten. Rewinds hold this lock shared; taking it exclusively
    -- also means there is only ever one compactor.
    PERFORM simtrail.take_lock('compaction');
    -- Compaction folds only sealed originals: a net change replaces them in
    -- the log, and the chain must already hold each one as it was captured.
    -- Sealing first keeps a direct caller (and the daemon) from stalling here.
    PERFORM simtrail.seal_all(50000);
    SELECT s.compacted_below INTO v_lo FROM simtrail.daemon_state AS s FOR UPDATE;
    SELECT t.id, t.at, simtrail.cut_scan_from(t.scan_from, t.snapshot, t.generation) AS scan_from
      INTO v_frontier FROM simtrail.ticks AS t
    WHERE t.at < pg_catalog.clock_timestamp() - p_window ORDER BY t.at DESC, t.id DESC LIMIT 1;
    IF NOT FOUND OR v_lo >= v_frontier.scan_from THEN
        RETURN pg_catalog.jsonb_build_object('done', true, 'scanned', 0, 'archived', 0, 'net', 0);
    END IF;
    -- Skip gaps (rolled-back ids, rows retention removed) in one step.
    v_lo := coalesce((SELECT pg_catalog.min(c.id) FROM simtrail.changes AS c
                      WHERE c.id >= v_lo AND c.id < v_frontier.scan_from), v_frontier.scan_from);
    v_hi := LEAST(v_frontier.scan_from, v_lo + p_batch);
    -- A batch stays inside one generation (one cluster's xids), whose
    -- transactions are in transactions until a later one moves them aside.
    SELECT g.generation INTO v_gen FROM simtrail.clusters AS g
    WHERE g.first_change_id <= v_lo ORDER BY g.generation DESC LIMIT 1;
    v_gen := coalesce(v_gen, 1);
    v_hi := LEAST(v_hi, (SELECT b.next_id FROM simtrail.generation_bounds(v_gen) AS b));
    v_current := (SELECT b.next_id IS NULL FROM simtrail.generation_bounds(v_gen) AS b);
    -- An original still unsealed stops the batch before it until a later
    -- seal has taken it. It has committed (the frontier tick saw it), so only
    -- an older transaction still open in this database holds the seal's
    -- horizon (seal_horizon) below it; a short one is waited for, up to two
    -- seconds.
    FOR i IN 1..40 LOOP
        v_unsealed := (SELECT pg_catalog.min(c.id) FROM simtrail.changes AS c
                       WHERE c.id >= v_lo AND c.id < v_hi AND c.net_count IS NULL
                         AND c.tenant_id IS NOT NULL
                         AND NOT EXISTS (SELECT 1 FROM simtrail.seals AS z WHERE z.change_id = c.id));
        EXIT WHEN v_unsealed IS NULL OR i = 40;
        PERFORM pg_catalog.pg_sleep(0.05);
        PERFORM simtrail.seal_all(50000);
    END LOOP;
    IF v_unsealed IS NOT NULL THEN
        v_hi := v_unsealed;
        IF v_hi <= v_lo THEN
            RETURN pg_catalog.jsonb_build_object('done', true, 'scanned', 0, 'archived', 0, 'net', 0,
                                                 'unsealed_from', v_unsealed);
        END IF;
    END IF;

    -- Work rows of this call live in simtrail's own tables (see version 4),
    -- keyed by the transaction; only one compactor runs at a time (the lock
    -- above). The cut points and the transactions' segments are small; the
    -- batch's own rows never go through a work table: what to fold is
    -- carried in arrays from the statement that reads the batch to the one
    -- that rewrites it.
    DELETE FROM simtrail.compact_cuts AS k WHERE k.call_id = v_call;
    DELETE FROM simtrail.compact_segments AS k WHERE k.call_id = v_call;
    -- Snapshots taken later have a larger xmax, or the same xmax and no more
    -- transactions in progress: this order is the order they were taken in,
    -- and a change seen by one cut point is seen by every later one.
    -- A later generation's cut sees every change of an earlier one.
    INSERT INTO simtrail.compact_cuts (call_id, ord, tenant_id, snapshot, snap_xmax, generation)
    SELECT v_call, pg_catalog.row_number() OVER (ORDER BY s.generation, s.xmax, s.running DESC, s.at),
           s.tenant_id, s.snapshot, s.xmax, s.generation
    FROM (SELECT NULL::text AS tenant_id, t.snapshot, t.at, t.generation,
                 pg_catalog.pg_snapshot_xmax(t.snapshot) AS xmax,
                 (SELECT pg_catalog.count(*) FROM pg_catalog.pg_snapshot_xip(t.snapshot)) AS running
          FROM simtrail.ticks AS t WHERE t.at <= v_frontier.at
          UNION ALL
          SELECT m.tenant_id, m.snapshot, m.created_at, m.generation,
                 pg_catalog.pg_snapshot_xmax(m.snapshot),
                 (SELECT pg_catalog.count(*) FROM pg_catalog.pg_snapshot_xip(m.snapshot))
          FROM simtrail.marks AS m WHERE m.generation >= v_gen) AS s
    WHERE s.generation >= v_gen;
    -- Years of hourly ticks make this table large enough for its index to
    -- matter; the planner needs this call's size to use it.
    ANALYZE simtrail.compact_cuts;
    v_later := EXISTS (SELECT 1 FROM simtrail.compact_cuts AS k
                       WHERE k.call_id = v_call AND k.generation > v_gen);

    -- The cut point of each transaction, per tenant (marks are per tenant).
    -- The actor rides along for the archive, so no batch joins the whole
    -- (ever growing) transactions table.
    INSERT INTO simtrail.compact_segments (call_id, tenant_id, xact_id, seg, actor, rewind_id)
    SELECT v_call, p.tenant_id, p.xact_id,
           LEAST((SELECT k.ord FROM simtrail.compact_cuts AS k
                  WHERE k.call_id = v_call AND k.snap_xmax > p.xact_id AND k.generation = v_gen
                    AND (k.tenant_id IS NULL OR k.tenant_id = p.tenant_id)
                    AND pg_catalog.pg_visible_in_snapshot(p.xact_id, k.snapshot)
                  ORDER BY k.call_id, k.snap_xmax, k.ord LIMIT 1),
                 -- Planned away when there is no later generation (usual).
                 CASE WHEN v_later THEN
                     (SELECT pg_catalog.min(k.ord) FROM simtrail.compact_cuts AS k
                      WHERE k.call_id = v_call AND k.generation > v_gen
                        AND (k.tenant_id IS NULL OR k.tenant_id = p.tenant_id)) END),
           CASE WHEN v_current
                THEN (SELECT x.actor FROM simtrail.transactions AS x WHERE x.xact_id = p.xact_id)
                ELSE (SELECT x.actor FROM simtrail.transactions_history AS x
                      WHERE x.generation = v_gen AND x.xact_id = p.xact_id) END,
           CASE WHEN v_current
                THEN (SELECT x.rewind_id FROM simtrail.transactions AS x WHERE x.xact_id = p.xact_id)
                ELSE (SELECT x.rewind_id FROM simtrail.transactions_history AS x
                      WHERE x.generation = v_gen AND x.xact_id = p.xact_id) END
    FROM (SELECT DISTINCT c.tenant_id, c.xact_id FROM simtrail.changes AS c
          WHERE c.id >= v_lo AND c.id < v_hi AND c.tenant_id IS NOT NULL
            AND c.net_from IS NULL) AS p;
    -- Without this call's size the planner expects a handful of rows from
    -- the join below and groups the batch by sorting on the jsonb key.
    ANALYZE simtrail.compact_segments;

    -- One pass over the batch: its originals grouped by row and segment. A group of two or more becomes one net change with the id of its last
    -- change. A rewind reads where a row that moved in came from off the two
    -- original halves of the move: never fold around one.
    WITH grp AS (
        SELECT c.tenant_id, c.table_name, s.seg,
               pg_catalog.max(c.id) AS net_id, pg_catalog.min(c.id) AS net_from,
               pg_catalog.count(*)::integer AS n,
               pg_catalog.bool_or(c.moved IS NOT NULL) AS moved,
               pg_catalog.bool_or(c.old_pk IS NOT NULL) AS pk_change,
               pg_catalog.array_agg(c.id) AS ids,
               pg_catalog.min(c.changed_at) AS lo, pg_catalog.max(c.changed_at) AS hi
        FROM simtrail.changes AS c
        JOIN simtrail.compact_segments AS s
          ON s.call_id = v_call AND s.tenant_id = c.tenant_id AND s.xact_id = c.xact_id
        WHERE c.id >= v_lo AND c.id < v_hi AND c.net_from IS NULL
        GROUP BY c.tenant_id, c.table_name, s.seg, c.row_pk
    ), fold AS (
        SELECT g.net_id, g.net_from, g.n, g.ids, g.lo, g.hi FROM grp AS g
        WHERE g.n > 1 AND NOT g.moved
          AND (g.tenant_id, g.table_name, g.seg) NOT IN (
              SELECT k.tenant_id, k.table_name, k.seg FROM grp AS k WHERE k.pk_change)
    )
    -- Arrays filled by one aggregate stay in step with each other.
    SELECT pg_catalog.array_agg(u.id), pg_catalog.array_agg(f.net_id), pg_catalog.array_agg(f.net_from),
           pg_catalog.array_agg(f.n), pg_catalog.min(f.lo), pg_catalog.max(f.hi)
      INTO v_member_ids, v_member_nets, v_member_froms, v_member_counts, v_span_lo, v_span_hi
    FROM fold AS f CROSS JOIN LATERAL pg_catalog.unnest(f.ids) AS u(id);
    v_archived := coalesce(pg_catalog.cardinality(v_member_ids), 0);
    SELECT pg_catalog.count(*) INTO v_scanned FROM simtrail.changes AS c
    WHERE c.id >= v_lo AND c.id < v_hi;

    IF v_archived > 0 THEN
        PERFORM simtrail.ensure_archive_partitions(v_span_lo, v_span_hi);
        -- One statement moves the originals and writes the net changes from
        -- what the DELETE returns, so no original is read twice. A net change
        -- is built from the deleted rows of its first and last original, so
        -- the last one (whose id it takes) is gone before it is inserted: the
        -- key's uniqueness check passes over rows this transaction deleted.
        -- The same reading of first and last images as simtrail.rewind_plan,
        -- for changes that each touch one key.
        WITH gone AS (
            DELETE FROM simtrail.changes AS c
            USING ROWS FROM (pg_catalog.unnest(v_member_ids), pg_catalog.unnest(v_member_nets),
                             pg_catalog.unnest(v_member_froms), pg_catalog.unnest(v_member_counts))
                  AS m(id, net_id, net_from, net_count)
            -- The id range keeps the planner from walking the log's key
            -- index from its start on every batch.
            WHERE c.id = m.id AND c.id >= v_lo AND c.id < v_hi
            RETURNING c.*, m.net_id AS to_net_id, m.net_from AS to_net_from, m.net_count AS to_net_count
        ), archived AS (
            INSERT INTO simtrail.archive (id, tenant_id, table_name, operation, row_pk, old_pk, old_data,
                                          new_data, xact_id, changed_at, moved, actor, rewind_id, net_id)
            SELECT g.id, g.tenant_id, g.table_name, g.operation, g.row_pk, g.old_pk, g.old_data,
                   g.new_data, g.xact_id, g.changed_at, g.moved, x.actor, x.rewind_id, g.to_net_id
            FROM gone AS g LEFT JOIN simtrail.compact_segments AS x
              ON x.call_id = v_call AND x.tenant_id = g.tenant_id AND x.xact_id = g.xact_id
        ), net AS (
            -- Each net change from its last original (l) and its first (f).
            SELECT l.to_net_id AS net_id, l.to_net_from AS net_from, l.to_net_count AS net_count,
                   l.tenant_id, l.table_name, l.row_pk, l.xact_id, l.changed_at,
                   CASE WHEN f.operation <> 'INSERT' AND f.moved IS DISTINCT FROM 'in'
                        THEN f.old_data END AS before_img,
                   CASE WHEN l.moved IS NOT DISTINCT FROM 'out' THEN NULL ELSE l.new_data END AS after_img
            FROM gone AS l JOIN gone AS f ON f.id = l.to_net_from
            WHERE l.id = l.to_net_id AND f.id = f.to_net_from
        )
        INSERT INTO simtrail.changes (id, tenant_id, table_name, operation, row_pk, old_data, new_data,
                                      xact_id, changed_at, net_from, net_count)
        SELECT n.net_id, n.tenant_id, n.table_name,
               CASE WHEN n.before_img IS NULL AND n.after_img IS NOT NULL THEN 'INSERT'
                    WHEN n.before_img IS NOT NULL AND n.after_img IS NOT NULL THEN 'UPDATE'
                    -- Also a row that came and went: kept so that a rewind
                    -- still notices it if it has come back unlogged.
                    ELSE 'DELETE' END,
               n.row_pk, n.before_img, n.after_img, n.xact_id, n.changed_at, n.net_from, n.net_count
        FROM net AS n;
        GET DIAGNOSTICS v_net = ROW_COUNT;
    ELSE
        v_net := 0;
    END IF;

    UPDATE simtrail.daemon_state SET compacted_below = v_hi, last_compacted_at = pg_catalog.now();
    DELETE FROM simtrail.compact_cuts AS k WHERE k.call_id = v_call;
    DELETE FROM simtrail.compact_segments AS k WHERE k.call_id = v_call;
    RETURN pg_catalog.jsonb_build_object(
        'done', v_hi >= v_frontier.scan_from OR v_unsealed IS NOT NULL, 'scanned', v_scanned, 'archived', v_archived,
        'net', v_net, 'from_id', v_lo, 'to_id', v_hi, 'frontier_at', v_frontier.at);
END
$$;

-- Drop what is older than p_days: archive partitions (whole UTC days),
-- ticks, marks, and log rows no remaining cut point needs. A rewind target
-- before the horizon is refused from then on. p_days <= 0 keeps everything.
CREATE OR REPLACE FUNCTION simtrail.apply_retention(p_days integer)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_horizon timestamptz;
    v_keep_from bigint;
    r record;
    v_dropped text[] := ARRAY[]::text[];
    v_log bigint;
    v_ticks bigint;
    v_marks bigint;
    v_cut timestamptz;
    v_prune jsonb;
BEGIN
    IF p_days IS NULL OR p_days <= 0 THEN
        RETURN pg_catalog.jsonb_build_object('horizon', NULL, 'dropped_partitions', v_dropped);
    END IF;
    PERFORM simtrail.take_lock('compaction');
    v_horizon := pg_catalog.now() - pg_catalog.make_interval(days => p_days);
    -- Whole UTC days of archive go: partitions ending at or before this.
    v_cut := ((v_horizon AT TIME ZONE 'UTC')::date)::timestamp AT TIME ZONE 'UTC';

    DELETE FROM simtrail.ticks AS t WHERE t.at < v_horizon;
    GET DIAGNOSTICS v_ticks = ROW_COUNT;
    DELETE FROM simtrail.marks AS m WHERE m.created_at < v_horizon;
    GET DIAGNOSTICS v_marks = ROW_COUNT;

    -- Log rows older than the horizon that no remaining tick or mark needs.
    SELECT LEAST((SELECT pg_catalog.min(simtrail.cut_scan_from(t.scan_from, t.snapshot, t.generation))
                  FROM simtrail.ticks AS t),
                 (SELECT pg_catalog.min(simtrail.cut_scan_from(m.scan_from, m.snapshot, m.generation))
                  FROM simtrail.marks AS m),
                 (SELECT s.last_value + 1 FROM simtrail.change_id_seq AS s))
      INTO v_keep_from;

    -- Before anything sealed goes, a prune record says per chain what goes
    -- (its seq range, count and last hash): the surviving chain is then
    -- checked from that recorded anchor, never from an assumed one.
    v_prune := simtrail.prune_seals(v_horizon, v_cut, v_keep_from);

    FOR r IN
        SELECT c.relname::text AS name
        FROM pg_catalog.pg_inherits AS i
        JOIN pg_catalog.pg_class AS c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'simtrail.archive'::regclass AND c.relname ~ '^archive_[0-9]{8}$'
          AND pg_catalog.to_timestamp(pg_catalog.substr(c.relname, 9), 'YYYYMMDD')::date
              + 1 <= (v_horizon AT TIME ZONE 'UTC')::date
        ORDER BY 1
    LOOP
        EXECUTE pg_catalog.format('DROP TABLE simtrail.%I', r.name);
        v_dropped := v_dropped || r.name;
    END LOOP;

    DELETE FROM simtrail.changes AS c WHERE c.id < v_keep_from AND c.changed_at < v_horizon;
    GET DIAGNOSTICS v_log = ROW_COUNT;
    DELETE FROM simtrail.transactions AS x
    WHERE x.started_at < v_horizon
      AND NOT EXISTS (SELECT 1 FROM simtrail.changes AS c WHERE c.xact_id = x.xact_id);
    DELETE FROM simtrail.transactions_history AS x
    WHERE x.started_at < v_horizon
      AND NOT EXISTS (SELECT 1 FROM simtrail.changes AS c WHERE c.xact_id = x.xact_id);

    UPDATE simtrail.daemon_state
    SET horizon = GREATEST(horizon, v_horizon);
    RETURN pg_catalog.jsonb_build_object(
        'horizon', v_horizon, 'dropped_partitions', v_dropped, 'log_rows_deleted', v_log,
        'ticks_deleted', v_ticks, 'marks_deleted', v_marks, 'prune', v_prune);
END
$$;

-- The daemon's upkeep (daemon/upkeep.py) packs the log after compaction:
-- plain VACUUM makes the removed rows' space reusable but returns only empty
-- pages at the table's end, and compaction leaves rows all over the table.
-- How many pages the log's rows would fill, packed, and how many it has.
CREATE OR REPLACE FUNCTION simtrail.log_pages()
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.jsonb_build_object(
        'pages', pg_catalog.pg_relation_size('simtrail.changes') / 8192,
        -- A heap tuple's header and line pointer come on top of its data.
        'packed_pages', coalesce((SELECT pg_catalog.ceil(pg_catalog.sum(pg_catalog.pg_column_size(c.*) + 32)
                                                        / 8192.0)::bigint
                                  FROM simtrail.changes AS c), 0))
$$;

-- Rewrite the log rows stored on heap pages [p_from_page, p_to_page), the
-- same rows with the same ids: a row written anew goes to free space that a
-- VACUUM recorded, at the front of the table, so the next VACUUM can cut the
-- emptied pages off its end. Rows of transactions still running are not
-- visible here and stay. Under the compaction lock, as compaction: a rewind
-- never reads the log while rows are moving. Returns how many rows moved and
-- the highest page one of them landed on.
CREATE OR REPLACE FUNCTION simtrail.relocate_log_rows(p_from_page bigint, p_to_page bigint)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    v_moved bigint;
    v_landed bigint;
BEGIN
    IF p_from_page IS NULL OR p_to_page IS NULL OR p_from_page < 0 OR p_to_page <= p_from_page THEN
        RAISE EXCEPTION 'relocate_log_rows needs a page range, got [%, %)', p_from_page, p_to_page
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM simtrail.take_lock('compaction');
    -- Each row is deleted before it is written again (the INSERT reads what
    -- the DELETE returns), and the key's uniqueness check passes over rows
    -- this transaction deleted. SELECT * keeps every column, whatever the
    -- log's version.
    WITH gone AS (
        DELETE FROM simtrail.changes AS c
        WHERE c.ctid >= pg_catalog.format('(%s,0)', p_from_page)::tid
          AND c.ctid < pg_catalog.format('(%s,0)', p_to_page)::tid
        RETURNING c.*
    ), back AS (
        INSERT INTO simtrail.changes SELECT g.* FROM gone AS g RETURNING ctid
    )
    SELECT pg_catalog.count(*), pg_catalog.max((b.ctid::text::point)[0])::bigint
      INTO v_moved, v_landed FROM back AS b;
    RETURN pg_catalog.jsonb_build_object('moved', v_moved, 'landed_max_page', v_landed);
END
$$;

-- The figures behind /metrics and `simtrail status`.
CREATE OR REPLACE FUNCTION simtrail.daemon_stats(p_window interval)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.jsonb_build_object(
        'log_rows', (SELECT pg_catalog.count(*) FROM simtrail.changes),
        'net_rows', (SELECT pg_catalog.count(*) FROM simtrail.changes AS c WHERE c.net_from IS NOT NULL),
        'archive_rows', (SELECT pg_catalog.count(*) FROM simtrail.archive),
        'log_bytes', pg_catalog.pg_total_relation_size('simtrail.changes'),
        'archive_bytes', (SELECT coalesce(pg_catalog.sum(pg_catalog.pg_total_relation_size(i.inhrelid)), 0)
                          FROM pg_catalog.pg_inherits AS i
                          WHERE i.inhparent = 'simtrail.archive'::regclass),
        'archive_partitions', (SELECT pg_catalog.count(*) FROM pg_catalog.pg_inherits AS i
                               WHERE i.inhparent = 'simtrail.archive'::regclass),
        'ticks', (SELECT pg_catalog.count(*) FROM simtrail.ticks),
        'marks', (SELECT pg_catalog.count(*) FROM simtrail.marks),
        'rewinds', (SELECT pg_catalog.count(*) FROM simtrail.rewinds),
        'horizon', s.horizon,
        'compacted_below', s.compacted_below,
        'last_compacted_at', s.last_compacted_at,
        -- How far compaction trails the fine window: the age, beyond the
        -- window, of the oldest change it has not reached.
        'compaction_lag_seconds', coalesce(GREATEST(0, EXTRACT(epoch FROM
            pg_catalog.now() - p_window - (SELECT c.changed_at FROM simtrail.changes AS c
                                          WHERE c.id >= s.compacted_below ORDER BY c.id LIMIT 1))), 0))
    FROM simtrail.daemon_state AS s
$$;
