-- The compaction benchmark's workload: class sessions charting on the clinic
-- schema, run server-side so that a million captured changes come from tens
-- of thousands of real transactions without a round trip each. Sent as one
-- script (no parameters) to the scratch database before the history starts.

-- Rows a class keeps charting in one "hour" (the span between two ticks):
-- students return to the same patients again and again, so compaction has
-- something to fold. `slot` groups the rows one transaction saves together.
CREATE TABLE public.bench_hot (
    tenant_id uuid NOT NULL,
    slot      integer NOT NULL,
    id        uuid NOT NULL
);
CREATE INDEX bench_hot_slot_idx ON public.bench_hot (slot, tenant_id);

-- Pick each class's hot vitals for an hour: a different pseudo-random set of
-- p_hot live rows per hour, p_per_xact rows to a transaction.
CREATE PROCEDURE public.bench_pick_hot(p_hour integer, p_hot integer, p_per_xact integer)
LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE public.bench_hot;
    INSERT INTO public.bench_hot (tenant_id, slot, id)
    SELECT r.tenant_id, (r.n - 1) / p_per_xact, r.id
    FROM (SELECT v.tenant_id, v.id,
                 row_number() OVER (PARTITION BY v.tenant_id
                                    ORDER BY hashtext(v.id::text || p_hour::text)) AS n
          FROM public.patient_vitals AS v) AS r
    WHERE r.n <= p_hot;
    ANALYZE public.bench_hot;
END
$$;

-- Rounds p_from..p_to of one hour. In every round each class, in turn,
-- re-charts its hot vitals (one transaction per slot), amends a few notes and
-- charts a few new vitals; classes interleave as they would on one server.
-- Every statement goes through simtrail's capture triggers; each COMMIT ends
-- one captured transaction.
CREATE PROCEDURE public.bench_chart(p_hour integer, p_from integer, p_to integer)
LANGUAGE plpgsql AS $$
DECLARE
    v_round integer;
    v_tenant uuid;
    v_slot integer;
    v_slots integer;
BEGIN
    SELECT max(h.slot) INTO v_slots FROM public.bench_hot AS h;
    FOR v_round IN p_from .. p_to LOOP
        FOR v_slot IN 0 .. coalesce(v_slots, -1) LOOP
            FOR v_tenant IN SELECT t.id FROM public.tenants AS t ORDER BY t.id LOOP
                UPDATE public.patient_vitals AS v
                SET heart_rate = 55 + (hashtext(v.id::text) + p_hour * 7 + v_round * 3) % 50,
                    pain_score = (p_hour + v_round) % 11,
                    respiratory_rate = 12 + v_round % 10,
                    oxygen_saturation = 92 + (p_hour + v_round) % 8
                FROM public.bench_hot AS h
                WHERE h.slot = v_slot AND h.tenant_id = v_tenant AND v.id = h.id;
                COMMIT;
            END LOOP;
        END LOOP;
        FOR v_tenant IN SELECT t.id FROM public.tenants AS t ORDER BY t.id LOOP
            UPDATE public.patient_notes AS n
            SET content = left(n.content, 300) || ' [reassessed h' || p_hour || ' r' || v_round || ']'
            WHERE n.id IN (SELECT n2.id FROM public.patient_notes AS n2
                           WHERE n2.tenant_id = v_tenant
                           ORDER BY hashtext(n2.id::text || p_hour::text) LIMIT 5);
            COMMIT;
            INSERT INTO public.patient_vitals
                (tenant_id, patient_id, heart_rate, temperature, pain_score, recorded_at)
            SELECT p.tenant_id, p.id, 72, 36.8, v_round % 11,
                   timestamptz '2025-11-03 07:00+00' + (p_hour * 60 + v_round) * interval '1 minute'
            FROM public.patients AS p
            WHERE p.tenant_id = v_tenant
            ORDER BY hashtext(p.id::text || p_hour::text || v_round::text) LIMIT 5;
            COMMIT;
        END LOOP;
    END LOOP;
END
$$;

-- Every class discharges one patient: a cascade through every child table,
-- each class in its own transaction.
CREATE PROCEDURE public.bench_discharge()
LANGUAGE plpgsql AS $$
DECLARE
    v_tenant uuid;
BEGIN
    FOR v_tenant IN SELECT t.id FROM public.tenants AS t ORDER BY t.id LOOP
        DELETE FROM public.patients
        WHERE id = (SELECT p.id FROM public.patients AS p WHERE p.tenant_id = v_tenant
                    ORDER BY p.id LIMIT 1);
        COMMIT;
    END LOOP;
END
$$;

-- The short session a "recent" rewind undoes: three rounds of corrections to
-- 40 vitals in transactions of 20, ten new vitals, two amended notes. The
-- same statements at every history length, so the rewinds compare.
CREATE PROCEDURE public.bench_probe_session(p_tenant uuid)
LANGUAGE plpgsql AS $$
DECLARE
    v_round integer;
    v_part integer;
BEGIN
    FOR v_round IN 1 .. 3 LOOP
        FOR v_part IN 0 .. 1 LOOP
            UPDATE public.patient_vitals AS v
            SET heart_rate = v.heart_rate + 1, pain_score = v_round
            WHERE v.id IN (SELECT v2.id FROM public.patient_vitals AS v2
                           WHERE v2.tenant_id = p_tenant
                           ORDER BY v2.id OFFSET v_part * 20 LIMIT 20);
            COMMIT;
        END LOOP;
    END LOOP;
    INSERT INTO public.patient_vitals (tenant_id, patient_id, heart_rate, temperature)
    SELECT p.tenant_id, p.id, 80, 37.0
    FROM public.patients AS p, generate_series(1, 5) AS g
    WHERE p.tenant_id = p_tenant
    ORDER BY p.id, g LIMIT 10;
    COMMIT;
    UPDATE public.patient_notes AS n SET content = n.content || ' [probe]'
    WHERE n.id IN (SELECT n2.id FROM public.patient_notes AS n2 WHERE n2.tenant_id = p_tenant
                   ORDER BY n2.id LIMIT 2);
    COMMIT;
END
$$;
