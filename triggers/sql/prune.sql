-- Retention and the hash chains: the prune record written before anything
-- sealed is dropped. Re-applied by every install (CREATE OR REPLACE), after
-- the versioned files; docs/CHAIN.md specifies the record.

-- Retention's part (apply_retention, before it drops anything): the seals
-- of the originals it is about to drop — archive rows in the partitions
-- ending by p_cut, log originals older than p_horizon below p_keep_from —
-- go, after a prune record names per chain the seq range, count and last
-- hash of what goes. A chain then starts from that anchor.
--
-- Retention cuts by change time, chains are ordered by seq, and the two
-- disagree for changes of statements that overlapped (a change's time is its
-- statement's start, its id is taken later). So a range is only ever a
-- chain's prefix: a dropped change above a seq that stays keeps its seal,
-- listed as "held" in the record, and the verifier takes that seal's hash on
-- trust of the record (its row is gone) until a later prune covers it.
CREATE OR REPLACE FUNCTION simtrail.prune_seals(
    p_horizon timestamptz, p_cut timestamptz, p_keep_from bigint)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_ids bigint[];
    v_ranges jsonb;
    v_held jsonb;
    v_record jsonb;
BEGIN
    PERFORM FROM simtrail.seal_state AS s FOR UPDATE;
    WITH gone AS (
        SELECT s.change_id, s.tenant_id, s.seq, s.hash FROM simtrail.seals AS s
        WHERE s.changed_at < p_horizon
          AND CASE WHEN EXISTS (SELECT 1 FROM simtrail.changes AS c
                                WHERE c.id = s.change_id AND c.net_count IS NULL)
                   THEN s.change_id < p_keep_from
                   ELSE s.changed_at < p_cut END
    ), stays AS (
        -- Per chain, the first seq that stays: what is pruned is below it.
        SELECT k.tenant_id IS NULL AS tnull, coalesce(k.tenant_id, '') AS tkey,
               pg_catalog.min(k.seq) AS seq
        FROM simtrail.seals AS k
        WHERE NOT EXISTS (SELECT 1 FROM gone AS x WHERE x.change_id = k.change_id)
        GROUP BY 1, 2
    ), marked AS (
        SELECT g.*, st.seq IS NULL OR g.seq < st.seq AS pruned
        FROM gone AS g
        LEFT JOIN stays AS st ON st.tnull = (g.tenant_id IS NULL)
                             AND st.tkey = coalesce(g.tenant_id, '')
    ), ranges AS (
        SELECT m.tenant_id, pg_catalog.min(m.seq) AS first_seq, pg_catalog.max(m.seq) AS last_seq,
               pg_catalog.count(*) AS n,
               (pg_catalog.array_agg(m.hash ORDER BY m.seq DESC))[1] AS last_hash
        FROM marked AS m WHERE m.pruned GROUP BY m.tenant_id
    )
    SELECT (SELECT pg_catalog.array_agg(m.change_id) FROM marked AS m WHERE m.pruned),
           (SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                'tenant_id', r.tenant_id, 'first_seq', r.first_seq, 'last_seq', r.last_seq,
                'count', r.n, 'last_hash', pg_catalog.encode(r.last_hash, 'hex'))
                ORDER BY r.tenant_id COLLATE "C" NULLS FIRST) FROM ranges AS r),
           (SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                'tenant_id', m.tenant_id, 'seq', m.seq, 'change_id', m.change_id)
                ORDER BY m.tenant_id COLLATE "C" NULLS FIRST, m.seq)
            FROM marked AS m WHERE NOT m.pruned)
      INTO v_ids, v_ranges, v_held;
    -- Nothing pruned and every held seal already held by an earlier record:
    -- a record would say nothing new.
    IF v_ids IS NULL AND NOT EXISTS (
        SELECT 1 FROM pg_catalog.jsonb_array_elements(coalesce(v_held, '[]'::jsonb)) AS h
        WHERE NOT EXISTS (SELECT 1 FROM simtrail.chain_records AS r
                          CROSS JOIN LATERAL pg_catalog.jsonb_array_elements(r.body -> 'held') AS e
                          WHERE r.kind = 'prune' AND e.value ->> 'change_id' = h.value ->> 'change_id'))
    THEN
        RETURN pg_catalog.jsonb_build_object('seals_dropped', 0);
    END IF;
    v_record := simtrail.append_record('prune', pg_catalog.jsonb_build_object(
        'v', 1, 'kind', 'prune', 'at', simtrail.chain_time(pg_catalog.clock_timestamp()),
        'ranges', coalesce(v_ranges, '[]'::jsonb), 'held', coalesce(v_held, '[]'::jsonb)));
    DELETE FROM simtrail.seals AS s WHERE s.change_id = ANY (v_ids);
    RETURN pg_catalog.jsonb_build_object('seals_dropped', coalesce(pg_catalog.cardinality(v_ids), 0),
                                         'seals_held', coalesce(pg_catalog.jsonb_array_length(v_held), 0),
                                         'record_id', v_record -> 'id');
END
$$;
