-- Sealing: every original change joins its tenant's hash chain, and every
-- seal that sealed anything appends a checkpoint to the record chain.
-- Re-applied by every install (CREATE OR REPLACE), after the versioned files.
-- docs/CHAIN.md is the specification; change one, change both.

-- The 32 zero bytes a chain (and the record chain) starts from.
CREATE OR REPLACE FUNCTION simtrail.chain_zero()
RETURNS bytea
LANGUAGE sql IMMUTABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea
$$;

-- A time as the chain spells it: UTC, microseconds, a Z.
CREATE OR REPLACE FUNCTION simtrail.chain_time(p_at timestamptz)
RETURNS text
LANGUAGE sql IMMUTABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.to_char(p_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

-- The xid below which every transaction that could write this database's
-- log has ended, and is visible to every later snapshot of this session.
-- The snapshot's xmin would do, but it is cluster-wide: one writer left open
-- in another database would hold sealing (and compaction, which folds only
-- sealed rows) back for as long as it stays open. Of the transactions the
-- snapshot saw running, one holds the horizon when it belongs here (a
-- backend connected to this database, or a transaction prepared in it) or
-- when it has ended since (its rows are invisible to this snapshot, so the
-- next seal takes them). One that is still running and belongs to another
-- database cannot write this log, and is passed over.
CREATE OR REPLACE FUNCTION simtrail.seal_horizon()
RETURNS xid8
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_snap pg_snapshot;
    v_here xid[];
    v_held xid8;
    v_ended boolean;
BEGIN
    -- One that ended between the snapshot and the check is seen by a fresh
    -- snapshot (each statement takes one): look again, a few times at most.
    FOR i IN 1..3 LOOP
        v_snap := pg_catalog.pg_current_snapshot();
        -- Read after the snapshot, and afresh: backend status cached earlier
        -- in this transaction would miss a writer that took its xid since.
        PERFORM pg_catalog.pg_stat_clear_snapshot();
        v_here := ARRAY(
            SELECT a.backend_xid FROM pg_catalog.pg_stat_activity AS a
            WHERE a.datname = pg_catalog.current_database() AND a.backend_xid IS NOT NULL
            UNION ALL
            SELECT p.transaction FROM pg_catalog.pg_prepared_xacts AS p
            WHERE p.database = pg_catalog.current_database());
        SELECT x, pg_catalog.xid(x) <> ALL (v_here) INTO v_held, v_ended
        FROM pg_catalog.pg_snapshot_xip(v_snap) AS x
        WHERE pg_catalog.xid(x) = ANY (v_here)
           OR pg_catalog.pg_xact_status(x) IS DISTINCT FROM 'in progress'
        ORDER BY x LIMIT 1;
        EXIT WHEN v_held IS NULL OR NOT v_ended;
    END LOOP;
    RETURN coalesce(v_held, pg_catalog.pg_snapshot_xmax(v_snap));
END
$$;

-- Canonical encoding v1 of one original change, the text its hash covers.
-- Each image column becomes a salted commitment, so an export can withhold
-- a value and still let the chain be checked; the salt is keyed by the
-- database's secret, so a withheld value cannot be found by guessing.
-- xact_id is left out on purpose: a rebase after a restore rewrites it.
--
-- The encoding is kept as SQL text, rendered here and nowhere else:
-- seal_batch and verify_chains run it inline over their rows (a call per
-- change through a definer function, with its pinned search_path, costs
-- more than the encoding itself), and change_canon runs it for one change.
-- render_commitments gives one image's commitments: p_row is the alias of
-- a row with columns id and <p_side>_data, p_secret an expression for the
-- secret. jsonb_object over two arrays builds the same object as
-- jsonb_object_agg in about half the time, which is most of a seal's cost.
CREATE OR REPLACE FUNCTION simtrail.render_commitments(p_row text, p_side text, p_secret text)
RETURNS text
LANGUAGE sql IMMUTABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.format($r$CASE WHEN %1$s.%2$s_data IS NOT NULL THEN coalesce(
        (SELECT pg_catalog.jsonb_object(pg_catalog.array_agg(e.key), pg_catalog.array_agg(
             pg_catalog.encode(pg_catalog.sha256(
                 pg_catalog.substring(pg_catalog.sha256(%3$s || pg_catalog.convert_to(
                     %1$s.id::text || '/%2$s/' || e.key, 'UTF8')), 1, 16)
                 || pg_catalog.convert_to(e.value::text, 'UTF8')), 'hex')))
         FROM pg_catalog.jsonb_each(%1$s.%2$s_data) AS e), '{}'::jsonb) END$r$,
        p_row, p_side, p_secret)
$$;

-- The whole encoding of the row p_row (the log's columns, with actor) at
-- chain position p_seq (an expression), as text.
CREATE OR REPLACE FUNCTION simtrail.render_canon(p_row text, p_seq text, p_secret text)
RETURNS text
LANGUAGE sql IMMUTABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.format($r$pg_catalog.jsonb_build_object(
        'v', 1, 'seq', %2$s, 'id', %1$s.id, 'tenant_id', %1$s.tenant_id,
        'table_name', %1$s.table_name, 'operation', %1$s.operation,
        'row_pk', %1$s.row_pk, 'old_pk', %1$s.old_pk,
        'old_data', %3$s, 'new_data', %4$s,
        'changed_at', pg_catalog.to_char(%1$s.changed_at AT TIME ZONE 'UTC',
                                         'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'actor', %1$s.actor, 'moved', %1$s.moved)::text$r$,
        p_row, p_seq, simtrail.render_commitments(p_row, 'old', p_secret),
        simtrail.render_commitments(p_row, 'new', p_secret))
$$;

-- One change's encoding: the reference tests and docs/CHAIN.md point to.
CREATE OR REPLACE FUNCTION simtrail.change_canon(
    p_secret bytea, p_seq bigint, p_id bigint, p_tenant_id text, p_table_name text,
    p_operation text, p_row_pk jsonb, p_old_pk jsonb, p_old_data jsonb, p_new_data jsonb,
    p_changed_at timestamptz, p_actor jsonb, p_moved text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_canon text;
BEGIN
    EXECUTE 'SELECT ' || simtrail.render_canon('c', '$2', '$1')
        || ' FROM (SELECT $3 AS id, $4 AS tenant_id, $5 AS table_name, $6 AS operation,'
        || ' $7 AS row_pk, $8 AS old_pk, $9 AS old_data, $10 AS new_data,'
        || ' $11 AS changed_at, $12 AS actor, $13 AS moved) AS c'
    INTO v_canon
    USING p_secret, p_seq, p_id, p_tenant_id, p_table_name, p_operation, p_row_pk, p_old_pk,
          p_old_data, p_new_data, p_changed_at, p_actor, p_moved;
    RETURN v_canon;
END
$$;

-- The salt of each column of one image, for an export that discloses values
-- (the verifier recomputes each commitment from value and salt).
CREATE OR REPLACE FUNCTION simtrail.change_salts(p_id bigint, p_side text, p_img jsonb)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN p_img IS NOT NULL THEN coalesce(
        (SELECT pg_catalog.jsonb_object_agg(e.key, pg_catalog.encode(pg_catalog.substring(
             pg_catalog.sha256(k.secret || pg_catalog.convert_to(
                 p_id::text || '/' || p_side || '/' || e.key, 'UTF8')), 1, 16), 'hex'))
         FROM pg_catalog.jsonb_object_keys(p_img) AS e(key), simtrail.seal_secret AS k),
        '{}'::jsonb) END
$$;

-- Append one record to the record chain and return its id and hash.
-- Appends are serialised on seal_state's row: the chain has one tip.
CREATE OR REPLACE FUNCTION simtrail.append_record(p_kind text, p_body jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_prev bytea;
    v_hash bytea;
    v_id bigint;
BEGIN
    IF p_kind IS NULL OR p_kind NOT IN ('checkpoint', 'prune', 'export')
       OR p_body IS NULL OR p_body ->> 'kind' IS DISTINCT FROM p_kind THEN
        RAISE EXCEPTION 'a chain record needs a kind (checkpoint, prune or export) matching its body''s'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM FROM simtrail.seal_state AS s FOR UPDATE;
    v_prev := coalesce((SELECT r.hash FROM simtrail.chain_records AS r ORDER BY r.id DESC LIMIT 1),
                       simtrail.chain_zero());
    v_hash := pg_catalog.sha256(v_prev || pg_catalog.convert_to(p_body::text, 'UTF8'));
    INSERT INTO simtrail.chain_records (kind, at, body, prev_hash, hash)
    VALUES (p_kind, coalesce((p_body ->> 'at')::timestamptz, pg_catalog.clock_timestamp()),
            p_body, v_prev, v_hash)
    RETURNING id INTO v_id;
    RETURN pg_catalog.jsonb_build_object('id', v_id, 'hash', pg_catalog.encode(v_hash, 'hex'));
END
$$;

-- Every chain's head, as checkpoints and exports list them: by tenant in
-- byte order (COLLATE "C", whatever the database's collation), the
-- tenantless chain first.
CREATE OR REPLACE FUNCTION simtrail.chain_heads_json()
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'tenant_id', h.tenant_id, 'seq', h.seq, 'hash', pg_catalog.encode(h.hash, 'hex'))
           ORDER BY h.tenant_id COLLATE "C" NULLS FIRST), '[]'::jsonb)
    FROM simtrail.chain_heads AS h
$$;

-- Record a signature of record p_id's hash (made outside the database with
-- the operator's private key). A signed record is never re-signed.
CREATE OR REPLACE FUNCTION simtrail.sign_record(p_id bigint, p_signature bytea, p_key_id text)
RETURNS boolean
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH signed AS (
        UPDATE simtrail.chain_records AS r SET signature = p_signature, key_id = p_key_id
        WHERE r.id = p_id AND r.signature IS NULL RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM signed)
$$;

-- Seal up to p_limit originals, in one transaction (the caller's).
--
-- Only transactions below the snapshot's xmin are sealed: every transaction
-- that could still commit has an id at or above it, so no later commit lands
-- behind a sealed row. Work goes in passes: a pass seals the transactions in
-- [xid_lo, xid_hi) (xid_hi the xmin when it began), reading the log in id
-- order from the first change of the first of them; the next pass begins
-- where it ended. The first pass of a generation (a new install over an
-- existing history, or a restored cluster) sweeps the whole log and the
-- archive instead, skipping what is sealed.
-- Within a batch, each tenant's rows are sealed in id order, with gapless
-- sequence numbers continuing from chain_heads. A crash loses the batch's
-- transaction whole, seal_state with it: nothing is sealed twice or skipped.
CREATE OR REPLACE FUNCTION simtrail.seal_batch(p_limit integer)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET work_mem = '64MB' SET jit = off AS $$
DECLARE
    st record;
    r record;
    v_secret bytea;
    v_xmin xid8 := simtrail.seal_horizon();
    v_gen integer;
    v_gen_first bigint;
    v_sweep boolean;
    v_hash bytea;
    v_tenant text;
    v_started boolean := false;
    v_ids bigint[] := ARRAY[]::bigint[];
    v_tenants text[] := ARRAY[]::text[];
    v_seqs bigint[] := ARRAY[]::bigint[];
    v_hashes bytea[] := ARRAY[]::bytea[];
    v_ats timestamptz[] := ARRAY[]::timestamptz[];
    v_n integer;
    v_last_id bigint;
    v_drained boolean;
    v_record jsonb;
BEGIN
    IF p_limit IS NULL OR p_limit < 1 THEN
        RAISE EXCEPTION 'a seal batch must hold at least one change'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT s.* INTO st FROM simtrail.seal_state AS s FOR UPDATE;
    -- A restored database's xids mean nothing here until the rebase (the
    -- next install, or the daemon) starts a generation; its first seal then
    -- sweeps what was not sealed before.
    IF simtrail.cluster_changed() THEN
        RETURN pg_catalog.jsonb_build_object('sealed', 0, 'done', true, 'rebase_needed', true);
    END IF;
    SELECT k.secret INTO v_secret FROM simtrail.seal_secret AS k;
    SELECT g.generation, g.first_change_id INTO v_gen, v_gen_first
    FROM simtrail.clusters AS g ORDER BY g.generation DESC LIMIT 1;
    v_sweep := st.generation IS DISTINCT FROM v_gen;

    IF v_sweep AND st.sweeping IS DISTINCT FROM v_gen THEN
        st.xid_hi := v_xmin;
        -- Every id, negative ones included (the log's ids are never below it).
        st.next_id := -9223372036854775807 - 1;
        st.sweeping := v_gen;
    ELSIF NOT v_sweep AND st.xid_hi IS NULL THEN
        IF v_xmin <= st.xid_lo THEN
            RETURN pg_catalog.jsonb_build_object('sealed', 0, 'done', true);
        END IF;
        st.xid_hi := v_xmin;
        st.next_id := (SELECT pg_catalog.min(x.first_change_id) FROM simtrail.transactions AS x
                       WHERE x.xact_id >= st.xid_lo AND x.xact_id < st.xid_hi);
        IF st.next_id IS NULL THEN
            UPDATE simtrail.seal_state
            SET xid_lo = st.xid_hi, xid_hi = NULL, next_id = NULL;
            RETURN pg_catalog.jsonb_build_object('sealed', 0, 'done', true);
        END IF;
    END IF;

    -- Candidates with their chain position; heads are joined on a key that
    -- treats the tenantless chain as one value, so the join can hash.
    -- The query is rendered (for the encoding, see render_canon) and run with
    -- its values as parameters: $1 secret, $2 sweeping, $3 next id, $4 and $5
    -- the xid window, $6 the generation's first id, $7 the batch size.
    FOR r IN EXECUTE pg_catalog.format($q$
        WITH cand AS (
            SELECT c.id, c.tenant_id, c.table_name, c.operation, c.row_pk, c.old_pk, c.old_data,
                   c.new_data, c.changed_at, c.moved,
                   CASE WHEN c.id >= $6
                        THEN (SELECT x.actor FROM simtrail.transactions AS x WHERE x.xact_id = c.xact_id)
                        ELSE (SELECT x.actor FROM simtrail.transactions_history AS x
                              WHERE x.xact_id = c.xact_id AND x.generation = (
                                  SELECT g.generation FROM simtrail.clusters AS g
                                  WHERE g.first_change_id <= c.id
                                  ORDER BY g.generation DESC LIMIT 1)) END AS actor
            FROM simtrail.changes AS c
            WHERE NOT $2 AND c.id >= $3 AND c.net_count IS NULL
              AND c.xact_id >= $4 AND c.xact_id < $5
            UNION ALL
            SELECT c.id, c.tenant_id, c.table_name, c.operation, c.row_pk, c.old_pk, c.old_data,
                   c.new_data, c.changed_at, c.moved,
                   coalesce(
                       (SELECT x.actor FROM simtrail.transactions AS x
                        WHERE x.xact_id = c.xact_id AND c.id >= $6),
                       (SELECT x.actor FROM simtrail.transactions_history AS x
                        WHERE x.xact_id = c.xact_id AND c.id < $6 AND x.generation = (
                            SELECT g.generation FROM simtrail.clusters AS g
                            WHERE g.first_change_id <= c.id ORDER BY g.generation DESC LIMIT 1)))
            FROM simtrail.changes AS c
            WHERE $2 AND c.id >= $3 AND c.net_count IS NULL
              AND (c.id < $6 OR c.xact_id < $5)
              AND NOT EXISTS (SELECT 1 FROM simtrail.seals AS s WHERE s.change_id = c.id)
            UNION ALL
            -- Compaction archives only sealed rows; unsealed archive rows
            -- predate sealing. Every one of them had committed.
            SELECT a.id, a.tenant_id, a.table_name, a.operation, a.row_pk, a.old_pk, a.old_data,
                   a.new_data, a.changed_at, a.moved, a.actor
            FROM simtrail.archive AS a
            WHERE $2 AND a.id >= $3
              AND NOT EXISTS (SELECT 1 FROM simtrail.seals AS s WHERE s.change_id = a.id)
            ORDER BY 1 LIMIT $7
        ), heads AS (
            SELECT t.tnull, t.tkey, coalesce(h.seq, 0) AS seq, coalesce(h.hash, simtrail.chain_zero()) AS hash
            FROM (SELECT DISTINCT c.tenant_id IS NULL AS tnull, coalesce(c.tenant_id, '') AS tkey
                  FROM cand AS c) AS t
            LEFT JOIN LATERAL (
                SELECT h.seq, h.hash FROM simtrail.chain_heads AS h
                WHERE (t.tnull AND h.tenant_id IS NULL) OR (NOT t.tnull AND h.tenant_id = t.tkey)
                LIMIT 1) AS h ON true
        ), numbered AS (
            SELECT c.*, h.hash AS head_hash,
                   h.seq + pg_catalog.row_number() OVER (PARTITION BY c.tenant_id ORDER BY c.id) AS seq
            FROM cand AS c
            JOIN heads AS h ON h.tnull = (c.tenant_id IS NULL) AND h.tkey = coalesce(c.tenant_id, '')
        )
        SELECT n.id, n.tenant_id, n.seq, n.head_hash, n.changed_at,
               %s AS canon
        FROM numbered AS n
        ORDER BY n.tenant_id COLLATE "C" NULLS FIRST, n.id
    $q$, simtrail.render_canon('n', 'n.seq', '$1'))
    USING v_secret, v_sweep, st.next_id, st.xid_lo, st.xid_hi, v_gen_first, p_limit
    LOOP
        IF NOT v_started OR r.tenant_id IS DISTINCT FROM v_tenant THEN
            v_hash := r.head_hash;
            v_tenant := r.tenant_id;
            v_started := true;
        END IF;
        v_hash := pg_catalog.sha256(v_hash || pg_catalog.convert_to(r.canon, 'UTF8'));
        v_ids := v_ids || r.id;
        v_tenants := v_tenants || r.tenant_id;
        v_seqs := v_seqs || r.seq;
        v_hashes := v_hashes || v_hash;
        v_ats := v_ats || r.changed_at;
    END LOOP;
    v_n := pg_catalog.cardinality(v_ids);
    v_drained := v_n < p_limit;

    IF v_n > 0 THEN
        INSERT INTO simtrail.seals (change_id, tenant_id, seq, hash, changed_at)
        SELECT * FROM ROWS FROM (pg_catalog.unnest(v_ids), pg_catalog.unnest(v_tenants),
                                 pg_catalog.unnest(v_seqs), pg_catalog.unnest(v_hashes),
                                 pg_catalog.unnest(v_ats));
        -- Each chain's new head: its highest seq in this batch.
        INSERT INTO simtrail.chain_heads AS h (tenant_id, seq, hash)
        SELECT DISTINCT ON (u.tenant_id) u.tenant_id, u.seq, u.hash
        FROM ROWS FROM (pg_catalog.unnest(v_tenants), pg_catalog.unnest(v_seqs),
                        pg_catalog.unnest(v_hashes)) AS u(tenant_id, seq, hash)
        ORDER BY u.tenant_id, u.seq DESC
        ON CONFLICT (tenant_id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash;
        v_last_id := (SELECT pg_catalog.max(i) FROM pg_catalog.unnest(v_ids) AS i);
    END IF;

    IF v_drained AND v_sweep THEN
        UPDATE simtrail.seal_state
        SET generation = v_gen, sweeping = NULL, xid_lo = st.xid_hi, xid_hi = NULL, next_id = NULL,
            sealed_at = pg_catalog.clock_timestamp();
    ELSIF v_drained THEN
        UPDATE simtrail.seal_state
        SET xid_lo = st.xid_hi, xid_hi = NULL, next_id = NULL, sealed_at = pg_catalog.clock_timestamp();
    ELSE
        UPDATE simtrail.seal_state
        SET sweeping = st.sweeping, xid_hi = st.xid_hi, next_id = v_last_id + 1,
            sealed_at = pg_catalog.clock_timestamp();
    END IF;

    IF v_n > 0 THEN
        v_record := simtrail.append_record('checkpoint', pg_catalog.jsonb_build_object(
            'v', 1, 'kind', 'checkpoint', 'at', simtrail.chain_time(pg_catalog.clock_timestamp()),
            'heads', simtrail.chain_heads_json()));
    END IF;
    RETURN pg_catalog.jsonb_build_object(
        'sealed', v_n,
        'tenants', (SELECT pg_catalog.count(*) FROM (SELECT DISTINCT t FROM pg_catalog.unnest(v_tenants) AS t) AS d),
        'record_id', v_record -> 'id',
        -- A drained pass may have left transactions that ended meanwhile.
        'done', v_drained AND NOT v_sweep AND st.xid_hi >= v_xmin);
END
$$;

-- Seal until nothing more can be sealed now; what compaction calls first.
CREATE OR REPLACE FUNCTION simtrail.seal_all(p_limit integer)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_batch jsonb;
    v_sealed bigint := 0;
    v_records jsonb := '[]'::jsonb;
BEGIN
    LOOP
        v_batch := simtrail.seal_batch(p_limit);
        v_sealed := v_sealed + (v_batch ->> 'sealed')::bigint;
        IF v_batch -> 'record_id' IS NOT NULL AND v_batch -> 'record_id' <> 'null'::jsonb THEN
            v_records := v_records || (v_batch -> 'record_id');
        END IF;
        EXIT WHEN (v_batch ->> 'done')::boolean;
    END LOOP;
    RETURN pg_catalog.jsonb_build_object('sealed', v_sealed, 'records', v_records);
END
$$;
