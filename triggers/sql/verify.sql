-- Checking the chains inside the database (`simtrail verify --db`): every
-- seal recomputed from the row it seals, the record chain, the prune
-- anchors, the heads, and originals that should be sealed but are not.
-- Re-applied by every install (CREATE OR REPLACE), after the versioned files.

-- A problem found: what it is, and where.
CREATE OR REPLACE FUNCTION simtrail.chain_problem(
    p_kind text, p_message text, p_tenant text, p_seq bigint, p_change bigint, p_record bigint)
RETURNS jsonb
LANGUAGE sql IMMUTABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.jsonb_build_object('kind', p_kind, 'message', p_message,
        'tenant_id', p_tenant, 'seq', p_seq, 'change_id', p_change, 'record_id', p_record)
$$;

-- The record chain from its start, and every prune range in it: contiguous
-- per tenant from seq 1. Returns the first problem, or NULL; the tenants'
-- anchors (what their surviving chains start from), and the seals prunes
-- held (their rows dropped, the seals kept: see prune_seals), by change id.
CREATE OR REPLACE FUNCTION simtrail.verify_records(
    OUT problem jsonb, OUT anchors jsonb, OUT records bigint, OUT held jsonb)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
    g record;
    v_prev bytea := simtrail.chain_zero();
    v_key text;
    v_anchor jsonb;
BEGIN
    anchors := '{}'::jsonb;
    held := '{}'::jsonb;
    records := 0;
    FOR r IN SELECT c.* FROM simtrail.chain_records AS c ORDER BY c.id LOOP
        records := records + 1;
        IF r.prev_hash IS DISTINCT FROM v_prev THEN
            problem := simtrail.chain_problem('record_chain',
                'chain record does not follow the one before it (a record was removed or inserted)',
                NULL, NULL, NULL, r.id);
            RETURN;
        END IF;
        IF r.hash IS DISTINCT FROM pg_catalog.sha256(r.prev_hash || pg_catalog.convert_to(r.body::text, 'UTF8'))
           OR r.body ->> 'kind' IS DISTINCT FROM r.kind THEN
            problem := simtrail.chain_problem('record_edited',
                'chain record''s hash does not match its body (the record was edited)',
                NULL, NULL, NULL, r.id);
            RETURN;
        END IF;
        v_prev := r.hash;
        IF r.kind = 'prune' THEN
            FOR g IN SELECT e.value AS v FROM pg_catalog.jsonb_array_elements(r.body -> 'ranges') AS e LOOP
                -- The tenantless chain's key cannot collide with a tenant's.
                v_key := coalesce('t:' || (g.v ->> 'tenant_id'), 'null');
                v_anchor := anchors -> v_key;
                IF (g.v ->> 'first_seq')::bigint <> coalesce((v_anchor ->> 'seq')::bigint, 0) + 1
                   OR (g.v ->> 'last_seq')::bigint < (g.v ->> 'first_seq')::bigint THEN
                    problem := simtrail.chain_problem('prune_gap',
                        'prune range does not continue from the previous one of its chain',
                        g.v ->> 'tenant_id', (g.v ->> 'first_seq')::bigint, NULL, r.id);
                    RETURN;
                END IF;
                anchors := anchors || pg_catalog.jsonb_build_object(v_key, pg_catalog.jsonb_build_object(
                    'seq', (g.v ->> 'last_seq')::bigint, 'hash', g.v ->> 'last_hash', 'record_id', r.id));
            END LOOP;
            held := held || coalesce((SELECT pg_catalog.jsonb_object_agg(e.value ->> 'change_id', r.id)
                                      FROM pg_catalog.jsonb_array_elements(r.body -> 'held') AS e),
                                     '{}'::jsonb);
        END IF;
    END LOOP;
END
$$;

-- Every original (log rows with net_count NULL, archive rows) with the
-- actor the chain hashed for it. change_canon's inputs, in one place.
CREATE OR REPLACE FUNCTION simtrail.chain_originals(p_tenant text, p_all boolean)
RETURNS TABLE (id bigint, tenant_id text, table_name text, operation text, row_pk jsonb,
               old_pk jsonb, old_data jsonb, new_data jsonb, changed_at timestamptz,
               actor jsonb, moved text, xact_id xid8, archived boolean)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT c.id, c.tenant_id, c.table_name, c.operation, c.row_pk, c.old_pk, c.old_data,
           c.new_data, c.changed_at,
           CASE WHEN gen.current THEN (SELECT x.actor FROM simtrail.transactions AS x
                                       WHERE x.xact_id = c.xact_id)
                ELSE (SELECT x.actor FROM simtrail.transactions_history AS x
                      WHERE x.xact_id = c.xact_id AND x.generation = gen.generation) END,
           c.moved, c.xact_id, false
    FROM simtrail.changes AS c
    LEFT JOIN LATERAL (
        SELECT g.generation, g.generation = (SELECT pg_catalog.max(z.generation)
                                             FROM simtrail.clusters AS z) AS current
        FROM simtrail.clusters AS g
        WHERE g.first_change_id <= c.id ORDER BY g.generation DESC LIMIT 1) AS gen ON true
    WHERE c.net_count IS NULL AND (p_all OR c.tenant_id IS NOT DISTINCT FROM p_tenant)
    UNION ALL
    SELECT a.id, a.tenant_id, a.table_name, a.operation, a.row_pk, a.old_pk, a.old_data,
           a.new_data, a.changed_at, a.actor, a.moved, a.xact_id, true
    FROM simtrail.archive AS a
    WHERE p_all OR a.tenant_id IS NOT DISTINCT FROM p_tenant
$$;

-- A chain's head must be where its seals (or, with none left, its anchor) end.
CREATE OR REPLACE FUNCTION simtrail.verify_head(p_tenant text, p_seq bigint, p_hash bytea)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE
        WHEN h.seq IS NULL AND p_seq > 0 THEN simtrail.chain_problem('head_missing',
            'the chain has seals but no head', p_tenant, p_seq, NULL, NULL)
        WHEN h.seq IS DISTINCT FROM p_seq AND NOT (h.seq IS NULL AND p_seq = 0) THEN
            simtrail.chain_problem('head_mismatch', pg_catalog.format(
                'the chain''s head is at seq %s but its seals end at seq %s'
                ' (seals were removed from its end, or the head was changed)', h.seq, p_seq),
                p_tenant, h.seq, NULL, NULL)
        WHEN h.hash IS DISTINCT FROM p_hash AND h.seq IS NOT NULL THEN
            simtrail.chain_problem('head_mismatch',
                'the chain''s head hash is not the hash its seals end with', p_tenant, p_seq, NULL, NULL)
        END
    FROM (SELECT (SELECT x.seq FROM simtrail.chain_heads AS x
                  WHERE x.tenant_id IS NOT DISTINCT FROM p_tenant) AS seq,
                 (SELECT x.hash FROM simtrail.chain_heads AS x
                  WHERE x.tenant_id IS NOT DISTINCT FROM p_tenant) AS hash) AS h
$$;

-- Check every chain (p_all) or one tenant's, as described at the top.
-- Returns {"ok": true, ...counts} or {"ok": false, "problem": {...}}.
CREATE OR REPLACE FUNCTION simtrail.verify_chains(p_tenant text, p_all boolean)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET work_mem = '64MB' SET jit = off AS $$
DECLARE
    v_secret bytea := (SELECT k.secret FROM simtrail.seal_secret AS k);
    v_rec record;
    r record;
    st record;
    v_problem jsonb;
    v_tenant text;
    v_started boolean := false;
    v_seq bigint;
    v_hash bytea;
    v_anchor jsonb;
    v_chains bigint := 0;
    v_seals bigint := 0;
    v_gen integer;
    v_gen_first bigint;
BEGIN
    SELECT * INTO v_rec FROM simtrail.verify_records();
    IF v_rec.problem IS NOT NULL THEN
        RETURN pg_catalog.jsonb_build_object('ok', false, 'problem', v_rec.problem);
    END IF;

    -- Each chain, seal by seal from its anchor, in one ordered pass.
    -- Rendered like seal_batch's query: $1 secret, $2 tenant, $3 every chain.
    FOR r IN EXECUTE pg_catalog.format($q$
        WITH o AS (SELECT * FROM simtrail.chain_originals($2, $3))
        SELECT t.tenant_id, s.seq, s.change_id, s.hash AS sealed, (o.id IS NOT NULL) AS present,
               CASE WHEN o.id IS NOT NULL THEN %s END AS canon
        FROM (SELECT h.tenant_id FROM simtrail.chain_heads AS h
              UNION SELECT s.tenant_id FROM simtrail.seals AS s) AS t
        -- A key that makes the tenantless chain one value, so the join can hash.
        LEFT JOIN simtrail.seals AS s
               ON (s.tenant_id IS NULL) = (t.tenant_id IS NULL)
              AND coalesce(s.tenant_id, '') = coalesce(t.tenant_id, '')
        LEFT JOIN o ON o.id = s.change_id
        WHERE $3 OR t.tenant_id IS NOT DISTINCT FROM $2
        ORDER BY t.tenant_id COLLATE "C" NULLS FIRST, s.seq
    $q$, simtrail.render_canon('o', 's.seq', '$1'))
    USING v_secret, p_tenant, p_all
    LOOP
        IF NOT v_started OR r.tenant_id IS DISTINCT FROM v_tenant THEN
            IF v_started THEN
                v_problem := simtrail.verify_head(v_tenant, v_seq, v_hash);
                IF v_problem IS NOT NULL THEN
                    RETURN pg_catalog.jsonb_build_object('ok', false, 'problem', v_problem);
                END IF;
            END IF;
            v_started := true;
            v_tenant := r.tenant_id;
            v_chains := v_chains + 1;
            v_anchor := v_rec.anchors -> coalesce('t:' || r.tenant_id, 'null');
            v_seq := coalesce((v_anchor ->> 'seq')::bigint, 0);
            v_hash := coalesce(pg_catalog.decode(v_anchor ->> 'hash', 'hex'), simtrail.chain_zero());
        END IF;
        CONTINUE WHEN r.seq IS NULL;
        IF r.seq <= v_seq THEN
            v_problem := simtrail.chain_problem('below_anchor',
                'a seal is at or below the chain''s prune anchor, which says it was dropped',
                r.tenant_id, r.seq, r.change_id, (v_anchor ->> 'record_id')::bigint);
        ELSIF r.seq <> v_seq + 1 THEN
            v_problem := simtrail.chain_problem('missing', pg_catalog.format(
                'seq %s is missing: a change and its seal were deleted, or no prune record'
                ' anchors what retention dropped', v_seq + 1),
                r.tenant_id, v_seq + 1, NULL, NULL);
        ELSIF NOT r.present AND v_rec.held ? r.change_id::text THEN
            -- Retention dropped the row and a prune record holds its seal:
            -- the chain goes on from the seal's hash.
            v_hash := r.sealed;
        ELSIF NOT r.present THEN
            v_problem := simtrail.chain_problem('deleted',
                'the sealed change is gone from the log and the archive',
                r.tenant_id, r.seq, r.change_id, NULL);
        ELSE
            v_hash := pg_catalog.sha256(v_hash || pg_catalog.convert_to(r.canon, 'UTF8'));
            IF v_hash IS DISTINCT FROM r.sealed AND v_anchor IS NOT NULL
               AND r.seq = (v_anchor ->> 'seq')::bigint + 1 THEN
                v_problem := simtrail.chain_problem('anchor_mismatch',
                    'the first change after a prune does not continue from the prune record''s'
                    ' anchor (the prune record, or this change, was altered)',
                    r.tenant_id, r.seq, r.change_id, (v_anchor ->> 'record_id')::bigint);
            ELSIF v_hash IS DISTINCT FROM r.sealed THEN
                v_problem := simtrail.chain_problem('edited',
                    'the change does not match its seal: it was edited in the log or archive'
                    ' (or the seal was)', r.tenant_id, r.seq, r.change_id, NULL);
            END IF;
        END IF;
        IF v_problem IS NOT NULL THEN
            RETURN pg_catalog.jsonb_build_object('ok', false, 'problem', v_problem);
        END IF;
        v_seq := r.seq;
        v_seals := v_seals + 1;
    END LOOP;
    IF v_started THEN
        v_problem := simtrail.verify_head(v_tenant, v_seq, v_hash);
        IF v_problem IS NOT NULL THEN
            RETURN pg_catalog.jsonb_build_object('ok', false, 'problem', v_problem);
        END IF;
    END IF;

    -- An original the seal has passed but that has no seal was put there
    -- behind simtrail's back (sealing takes every change of a finished
    -- transaction below its frontier).
    SELECT s.* INTO st FROM simtrail.seal_state AS s;
    SELECT g.generation, g.first_change_id INTO v_gen, v_gen_first
    FROM simtrail.clusters AS g ORDER BY g.generation DESC LIMIT 1;
    IF st.generation IS NOT DISTINCT FROM v_gen AND NOT simtrail.cluster_changed() THEN
        SELECT o.id, o.tenant_id INTO r FROM simtrail.chain_originals(p_tenant, p_all) AS o
        WHERE (o.archived OR o.id < v_gen_first OR o.xact_id < st.xid_lo
               OR (o.xact_id < st.xid_hi AND o.id < st.next_id))
          AND NOT EXISTS (SELECT 1 FROM simtrail.seals AS s WHERE s.change_id = o.id)
        ORDER BY o.id LIMIT 1;
        IF FOUND THEN
            RETURN pg_catalog.jsonb_build_object('ok', false, 'problem', simtrail.chain_problem(
                'inserted', 'an original change behind the sealed frontier has no seal'
                ' (inserted behind simtrail''s back)', r.tenant_id, NULL, r.id, NULL));
        END IF;
    END IF;

    -- Every checkpoint's head is a seal of the chain (or behind a prune
    -- anchor), and the last checkpoint is the heads as they stand: a
    -- chain cut short together with its head still disagrees with it.
    SELECT c.id, e.value ->> 'tenant_id' AS tenant_id, (e.value ->> 'seq')::bigint AS seq
      INTO r
    FROM simtrail.chain_records AS c
    CROSS JOIN LATERAL pg_catalog.jsonb_array_elements(c.body -> 'heads') AS e
    LEFT JOIN simtrail.seals AS s
           ON (s.tenant_id IS NULL) = (e.value ->> 'tenant_id' IS NULL)
          AND coalesce(s.tenant_id, '') = coalesce(e.value ->> 'tenant_id', '')
          AND s.seq = (e.value ->> 'seq')::bigint
    LEFT JOIN simtrail.chain_heads AS h
           ON (h.tenant_id IS NULL) = (e.value ->> 'tenant_id' IS NULL)
          AND coalesce(h.tenant_id, '') = coalesce(e.value ->> 'tenant_id', '')
    WHERE c.kind = 'checkpoint'
      AND (p_all OR (e.value ->> 'tenant_id') IS NOT DISTINCT FROM p_tenant)
      AND (h.seq IS NULL OR (e.value ->> 'seq')::bigint > h.seq
           OR (s.hash IS NOT NULL AND pg_catalog.encode(s.hash, 'hex') <> e.value ->> 'hash')
           OR (s.hash IS NULL AND (e.value ->> 'seq')::bigint
               > coalesce((v_rec.anchors -> coalesce('t:' || (e.value ->> 'tenant_id'), 'null') ->> 'seq')::bigint, 0)))
    ORDER BY c.id LIMIT 1;
    IF FOUND THEN
        RETURN pg_catalog.jsonb_build_object('ok', false, 'problem', simtrail.chain_problem(
            'checkpoint_mismatch', 'a checkpoint names a head the chain does not have',
            r.tenant_id, r.seq, NULL, r.id));
    END IF;
    SELECT c.id, c.body -> 'heads' AS heads INTO r FROM simtrail.chain_records AS c
    WHERE c.kind = 'checkpoint' ORDER BY c.id DESC LIMIT 1;
    IF FOUND AND r.heads IS DISTINCT FROM simtrail.chain_heads_json() THEN
        RETURN pg_catalog.jsonb_build_object('ok', false, 'problem', simtrail.chain_problem(
            'checkpoint_mismatch', 'the chains'' heads are not those of the last checkpoint',
            NULL, NULL, NULL, r.id));
    ELSIF NOT FOUND AND EXISTS (SELECT 1 FROM simtrail.chain_heads) THEN
        RETURN pg_catalog.jsonb_build_object('ok', false, 'problem', simtrail.chain_problem(
            'checkpoint_mismatch', 'chains have heads but no checkpoint records them',
            NULL, NULL, NULL, NULL));
    END IF;
    RETURN pg_catalog.jsonb_build_object('ok', true, 'chains', v_chains, 'seals', v_seals,
                                         'records', v_rec.records);
END
$$;
