-- Time targets: what a time means to a rewind, and how exact the state it
-- resolves to is. Re-applied by every install (CREATE OR REPLACE), after the
-- versioned files.
--
-- A time T resolves, in this order, to:
--   1. the last cut (a tick, or a mark of the tenant) at or before T, when no
--      change of the tenant that cut misses was made at or before T: the
--      state at T itself ("exact");
--   2. that cut, when it is no older than the tick spacing the daemon
--      promised ("exact to the tick");
--   3. commit timestamps, where track_commit_timestamp is on and every
--      transaction involved still has one ("commit timestamps");
--   4. in history whose ticks were thinned, the coarse (hourly) tick
--      before T, saying how far back it is;
--   5. with p_nearest, the last cut before T however old, saying so.
-- Otherwise it refuses and names the nearest earlier cut and its distance.
-- Transaction start times are never used: a transaction that began before T
-- and committed after it, next to one that began after T and committed
-- first, gives a state nobody saw.

-- A time as text, the one reading SQL callers get (the CLI sends the same
-- form): ISO-8601 with an explicit UTC offset. Words PostgreSQL's own input
-- accepts (now, today, yesterday, tomorrow, epoch, infinity, allballs) are
-- refused: they are not fixed moments, or no moment at all, and a rewind
-- target must mean the same thing whenever it is replayed. A time without an
-- offset would be read in whatever TimeZone the session has, which over
-- PostgREST nobody chose, so it is refused too.
CREATE OR REPLACE FUNCTION simtrail.parse_time(p_text text)
RETURNS timestamptz
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_text text := pg_catalog.btrim(p_text);
    v_time timestamptz;
BEGIN
    IF v_text IS NULL OR v_text = '' THEN
        RAISE EXCEPTION 'a time is required (ISO-8601 with a UTC offset, e.g. 2026-12-01T09:30:00+01:00)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF pg_catalog.lower(v_text) ~ '^[+-]?(now|today|tomorrow|yesterday|epoch|infinity|allballs)$' THEN
        RAISE EXCEPTION '% is refused as a time: now, today, yesterday, tomorrow, epoch and infinity are not fixed moments; give an ISO-8601 time with a UTC offset, e.g. 2026-12-01T09:30:00+01:00',
            pg_catalog.quote_literal(v_text) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_text !~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?([Zz]|[+-][0-9]{2}(:?[0-9]{2})?)$' THEN
        IF v_text ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?)?$' THEN
            RAISE EXCEPTION '% has no UTC offset: add one (e.g. +00:00 or Z) so the time does not depend on the session''s TimeZone',
                pg_catalog.quote_literal(v_text) USING ERRCODE = 'invalid_parameter_value';
        END IF;
        RAISE EXCEPTION '% is not a target: use mark:NAME, change:ID or an ISO-8601 time with a UTC offset, e.g. 2026-12-01T09:30:00+01:00',
            pg_catalog.quote_literal(v_text) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    BEGIN
        v_time := v_text::timestamptz;
    EXCEPTION WHEN data_exception THEN
        RAISE EXCEPTION '% is not a valid time', pg_catalog.quote_literal(v_text)
            USING ERRCODE = 'invalid_parameter_value';
    END;
    RETURN v_time;
END
$$;

-- A time as messages show it: ISO-8601 in the session's zone, to the
-- microsecond, so it can be pasted back as a target and name the same cut.
CREATE OR REPLACE FUNCTION simtrail.iso_time(p_time timestamptz)
RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.to_char(p_time, 'YYYY-MM-DD"T"HH24:MI:SS.USOF')
$$;

-- A distance in time as a person reads it: "0.004 s", "12 s", "4 min 12 s",
-- "2 h 5 min", "3 d 4 h".
CREATE OR REPLACE FUNCTION simtrail.describe_interval(p_interval interval)
RETURNS text
LANGUAGE sql IMMUTABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE
        WHEN s < 10 THEN pg_catalog.trim_scale(pg_catalog.round(s, 3))::text || ' s'
        WHEN s < 60 THEN pg_catalog.floor(s)::text || ' s'
        WHEN s < 3600 THEN pg_catalog.floor(s / 60)::text || ' min '
                           || pg_catalog.floor(pg_catalog.mod(s, 60))::text || ' s'
        WHEN s < 86400 THEN pg_catalog.floor(s / 3600)::text || ' h '
                            || pg_catalog.floor(pg_catalog.mod(s, 3600) / 60)::text || ' min'
        ELSE pg_catalog.floor(s / 86400)::text || ' d '
             || pg_catalog.floor(pg_catalog.mod(s, 86400) / 3600)::text || ' h'
    END
    FROM (SELECT EXTRACT(epoch FROM p_interval) AS s) AS x
$$;

-- Resolve a time target for one tenant (see the top of this file). Returns
-- what simtrail.resolve_target returns: kind, at, the cut used, resolved_by,
-- precision (in words), and predicate (a condition on simtrail.changes AS c
-- selecting exactly the changes to undo). Raises invalid_parameter_value,
-- having written nothing, when the time cannot be resolved as asked.
CREATE OR REPLACE FUNCTION simtrail.resolve_time(p_tenant text, p_time timestamptz, p_nearest boolean)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_cut record;
    v_has_cut boolean;
    v_promise interval;
    v_state record;
    v_predicate text;
    v_label text;
    v_distance interval;
    v_quiet boolean;
    v_commit_ts boolean := false;
    v_commit_note text := '';
    v_coarse text;
    v_precision text;
    v_resolved_by text;
BEGIN
    -- The last cut at or before the time. Every transaction its snapshot
    -- sees had committed by then; those it misses are the candidates.
    SELECT x.at, x.snapshot, x.scan_from, x.generation, x.kind, x.name INTO v_cut FROM (
        (SELECT t.at, t.snapshot, t.scan_from, t.generation, 'tick' AS kind, NULL::text AS name
         FROM simtrail.ticks AS t WHERE t.at <= p_time ORDER BY t.at DESC, t.id DESC LIMIT 1)
        UNION ALL
        (SELECT m.created_at, m.snapshot, m.scan_from, m.generation, 'mark', m.name
         FROM simtrail.marks AS m
         WHERE m.tenant_id = p_tenant AND m.created_at <= p_time
         ORDER BY m.created_at DESC, m.id DESC LIMIT 1)
    ) AS x ORDER BY x.at DESC, x.kind DESC LIMIT 1;
    v_has_cut := FOUND;
    -- The spacing the daemon promised around that time.
    SELECT t.promise INTO v_promise FROM simtrail.ticks AS t
    WHERE t.at <= p_time ORDER BY t.at DESC, t.id DESC LIMIT 1;
    SELECT s.thinned_before, s.coarse_every INTO v_state FROM simtrail.daemon_state AS s;

    IF v_has_cut THEN
        v_predicate := simtrail.cut_predicate(p_tenant, v_cut.scan_from, v_cut.snapshot,
                                              v_cut.generation);
        v_label := CASE WHEN v_cut.kind = 'mark' THEN 'mark ' || v_cut.name ELSE 'tick' END
                   || ' at ' || simtrail.iso_time(v_cut.at);
        v_distance := p_time - v_cut.at;
    ELSE
        -- Before every cut: the state before each of the tenant's changes.
        v_predicate := pg_catalog.format('c.tenant_id = %L', p_tenant);
    END IF;

    -- 1. A change made after T committed after T. When every candidate was
    -- made after T, the cut's state is the state at T. A net change may
    -- stand for originals made before T, so it never proves this.
    EXECUTE pg_catalog.format(
        'SELECT NOT EXISTS (SELECT 1 FROM simtrail.changes AS c WHERE %s'
        ' AND (c.changed_at <= $1 OR c.net_from IS NOT NULL))', v_predicate)
        INTO v_quiet USING p_time;
    IF v_quiet THEN
        v_precision := CASE WHEN v_has_cut
            THEN pg_catalog.format('exact: no change of this tenant between %s and the time asked', v_label)
            ELSE 'exact: no change of this tenant logged before the time asked' END;
        v_resolved_by := coalesce(v_label, 'the log before every change of the tenant');

    -- 2. No older than the promised tick spacing.
    ELSIF v_has_cut AND v_distance <= coalesce(v_promise, interval '0') THEN
        v_precision := CASE WHEN v_distance = interval '0'
            THEN pg_catalog.format('exact: %s, the time asked', v_label)
            ELSE pg_catalog.format('exact to the tick (%s): state at %s, %s before the time asked',
                                   simtrail.describe_interval(v_promise), v_label,
                                   simtrail.describe_interval(v_distance)) END;
        v_resolved_by := v_label;
    END IF;

    -- 3. Commit timestamps: undo exactly the transactions that committed
    -- after T. Only when every candidate transaction has a believable one: a
    -- timestamp before the change was made, or for an xid so old that its
    -- 32-bit form may alias another, is not believed; net changes fold
    -- transactions of different commit times, so they rule it out.
    IF v_precision IS NULL AND pg_catalog.current_setting('track_commit_timestamp') = 'on' THEN
        EXECUTE pg_catalog.format(
            'SELECT NOT EXISTS (SELECT 1 FROM simtrail.changes AS c WHERE %s AND ('
            '  c.net_from IS NOT NULL'
            '  OR pg_catalog.pg_snapshot_xmax(pg_catalog.pg_current_snapshot())::text::numeric'
            '     - c.xact_id::text::numeric > 1000000000'
            '  OR pg_catalog.pg_xact_commit_timestamp(c.xact_id::xid) IS NULL'
            '  OR pg_catalog.pg_xact_commit_timestamp(c.xact_id::xid) < c.changed_at))', v_predicate)
            INTO v_commit_ts;
        IF v_commit_ts THEN
            v_predicate := v_predicate || pg_catalog.format(
                ' AND pg_catalog.pg_xact_commit_timestamp(c.xact_id::xid) > %L::timestamptz', p_time);
            v_precision := 'commit timestamps: the transactions that committed after the time asked are undone'
                           ' (the order the server stamped commits in, which for commits microseconds apart'
                           ' can differ from the order they became visible)';
            v_resolved_by := 'commit timestamps';
        ELSE
            v_commit_note := ' (commit timestamps are not available for all of its changes)';
        END IF;
    END IF;

    -- 4. Thinned history keeps one tick per coarse_every: use it, and say
    -- how far back it is.
    IF v_precision IS NULL AND v_has_cut AND v_state.thinned_before IS NOT NULL
       AND p_time < v_state.thinned_before
       AND v_distance <= v_state.coarse_every + coalesce(v_promise, interval '0') THEN
        v_coarse := CASE WHEN v_cut.kind = 'mark' THEN 'mark ' || v_cut.name
                         WHEN v_state.coarse_every = interval '1 hour' THEN 'hourly tick'
                         ELSE 'tick kept every ' || simtrail.describe_interval(v_state.coarse_every) END;
        v_precision := pg_catalog.format('%s in compacted history: state at %s, %s before the time asked',
                                         v_coarse, simtrail.iso_time(v_cut.at),
                                         simtrail.describe_interval(v_distance));
        v_resolved_by := v_label || ' (compacted history)';
    END IF;

    -- 5. Asked for the nearest earlier cut.
    IF v_precision IS NULL AND v_has_cut AND p_nearest THEN
        v_precision := pg_catalog.format('not exact: nearest earlier cut, %s, %s before the time asked',
                                         v_label, simtrail.describe_interval(v_distance));
        v_resolved_by := v_label || ' (nearest)';
    END IF;

    IF v_precision IS NULL AND v_has_cut THEN
        RAISE EXCEPTION '%; the nearest earlier cut is % (% earlier); rewind with --nearest (SQL: p_nearest => true) or --to %',
            CASE WHEN v_promise IS NULL
                 THEN pg_catalog.format('no daemon tick covers %s and no mark is at it', simtrail.iso_time(p_time))
                 ELSE pg_catalog.format('no tick or mark within %s of %s', simtrail.describe_interval(v_promise),
                                        simtrail.iso_time(p_time)) END || v_commit_note,
            v_label, simtrail.describe_interval(v_distance),
            CASE WHEN v_cut.kind = 'mark' THEN 'mark:' || v_cut.name ELSE simtrail.iso_time(v_cut.at) END
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF v_precision IS NULL THEN
        RAISE EXCEPTION 'no tick or mark at or before %, and the tenant changed before it%: there is no earlier cut to rewind to',
            simtrail.iso_time(p_time), v_commit_note USING ERRCODE = 'invalid_parameter_value';
    END IF;

    RETURN pg_catalog.jsonb_build_object(
        'kind', 'time', 'at', p_time, 'cut_at', v_cut.at,
        'cut', CASE WHEN v_has_cut THEN v_cut.kind END,
        'resolved_by', v_resolved_by, 'precision', v_precision,
        'predicate', v_predicate);
END
$$;
