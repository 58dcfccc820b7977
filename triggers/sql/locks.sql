-- simtrail's locks: row locks on tables in schema simtrail, which no
-- application role can read, lock or write (advisory locks, by contrast, are
-- open to every role, and their keys are visible in pg_locks).
-- Re-applied by every install (CREATE OR REPLACE), after the versioned files.
--
-- What blocks what:
--   tenant_locks row of T   writers of T: FOR KEY SHARE until commit (they
--                           never wait for each other); a rewind of T:
--                           FOR UPDATE. Other tenants' rows are never touched.
--   locks 'compaction'      rewinds: FOR SHARE; a compaction batch and
--                           retention: FOR UPDATE.
--   locks 'sync'/'install'  FOR UPDATE by whoever changes triggers;
--   locks 'rebase'          FOR UPDATE while a restored cluster is rebased.

-- The cold path of the capture trigger's tenant lock (capture.sql,
-- render_tenant_hold): some tenant written for has no row yet. Creates the
-- missing rows and locks all of p_tenants; true, for use in a filter.
-- Concurrent first writers of one tenant do not fail: a second inserter
-- waits for the first to commit and then finds the row.
-- Under REPEATABLE READ a row created after the transaction's snapshot
-- cannot be locked; the writer then gets a serialization failure, which such
-- transactions must retry anyway, rather than write without the lock.
CREATE OR REPLACE FUNCTION simtrail.add_tenant_locks(p_tenants text[])
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_held integer;
BEGIN
    INSERT INTO simtrail.tenant_locks (tenant_id)
    SELECT DISTINCT t.tenant FROM pg_catalog.unnest(p_tenants) AS t (tenant)
    WHERE t.tenant IS NOT NULL ORDER BY 1
    ON CONFLICT DO NOTHING;
    SELECT pg_catalog.count(*) INTO v_held FROM (
        SELECT FROM simtrail.tenant_locks AS k WHERE k.tenant_id = ANY (p_tenants)
        FOR KEY SHARE OF k) AS held;
    IF v_held < (SELECT pg_catalog.count(DISTINCT t) FROM pg_catalog.unnest(p_tenants) AS t) THEN
        RAISE EXCEPTION 'simtrail: a tenant lock row was created after this transaction''s snapshot; retry the transaction'
            USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN true;
END
$$;

-- Take tenant p_tenant's lock exclusively, for a rewind. Waits like any row
-- lock, so the caller's lock_timeout applies; raises lock_not_available when
-- the row exists but this snapshot cannot see it yet, so the rewind retries.
CREATE OR REPLACE FUNCTION simtrail.lock_tenant(p_tenant text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM FROM simtrail.tenant_locks AS k WHERE k.tenant_id = p_tenant FOR UPDATE OF k;
    IF FOUND THEN
        RETURN;
    END IF;
    INSERT INTO simtrail.tenant_locks (tenant_id) VALUES (p_tenant) ON CONFLICT DO NOTHING;
    PERFORM FROM simtrail.tenant_locks AS k WHERE k.tenant_id = p_tenant FOR UPDATE OF k;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the lock of tenant % was created concurrently', p_tenant
            USING ERRCODE = 'lock_not_available';
    END IF;
END
$$;

-- Take one of the locks in simtrail.locks: exclusively, or shared.
CREATE OR REPLACE FUNCTION simtrail.take_lock(p_name text, p_shared boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_shared THEN
        PERFORM FROM simtrail.locks AS l WHERE l.name = p_name FOR SHARE OF l;
    ELSE
        PERFORM FROM simtrail.locks AS l WHERE l.name = p_name FOR UPDATE OF l;
    END IF;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'simtrail.locks has no row %', p_name USING ERRCODE = 'internal_error';
    END IF;
END
$$;


CREATE OR REPLACE FUNCTION simtrail.restore_lock_settings(p_lock text, p_deadlock text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pg_catalog.set_config('lock_timeout', p_lock, true);
    BEGIN
        PERFORM pg_catalog.set_config('deadlock_timeout', p_deadlock, true);
    EXCEPTION WHEN insufficient_privilege THEN
        NULL;
    END;
END
$$;

-- Run p_job(p_args) holding tenant p_tenant's lock exclusively and the
-- compaction lock shared: what a rewind and a purge do to one tenant's rows.
-- p_job is one of ours taking and returning jsonb; its result comes back
-- with `attempts` added. The whole job is retried (its work undone) when the
-- tenant's writers hold locks it needs, and refused after 10 attempts.
CREATE OR REPLACE FUNCTION simtrail.with_tenant_lock(p_tenant text, p_job regprocedure, p_args jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_lock_timeout text := pg_catalog.current_setting('lock_timeout');
    v_deadlock_timeout text := pg_catalog.current_setting('deadlock_timeout');
    v_call text;
    v_attempt integer := 0;
    v_result jsonb;
BEGIN
    SELECT pg_catalog.format('%I.%I', n.nspname, p.proname) INTO v_call
    FROM pg_catalog.pg_proc AS p JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
    WHERE p.oid = p_job AND n.nspname = 'simtrail'
      AND p.pronargs = 1 AND p.proargtypes[0] = 'jsonb'::regtype AND p.prorettype = 'jsonb'::regtype;
    IF v_call IS NULL THEN
        RAISE EXCEPTION '% is not a simtrail job (jsonb) returning jsonb', p_job
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    LOOP
        v_attempt := v_attempt + 1;
        BEGIN
            -- A writer of this tenant that already holds a row we need waits
            -- on our tenant lock, so waiting for that row only deadlocks.
            -- Give way quickly, then try again: a short lock_timeout, and
            -- (where allowed) a short deadlock_timeout so that this session,
            -- not the application's, is the one that notices and backs off.
            PERFORM pg_catalog.set_config('lock_timeout', '200ms', true);
            BEGIN
                PERFORM pg_catalog.set_config('deadlock_timeout', '10ms', true);
            EXCEPTION WHEN insufficient_privilege THEN
                NULL;
            END;
            -- Compaction must not rewrite the log while we read it; the
            -- tenant's writers must wait for us.
            PERFORM simtrail.take_lock('compaction', true);
            PERFORM simtrail.lock_tenant(p_tenant);
            EXECUTE pg_catalog.format('SELECT %s($1)', v_call) INTO v_result USING p_args;
            PERFORM simtrail.restore_lock_settings(v_lock_timeout, v_deadlock_timeout);
            RETURN v_result || pg_catalog.jsonb_build_object('attempts', v_attempt);
        EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
            PERFORM simtrail.restore_lock_settings(v_lock_timeout, v_deadlock_timeout);
            IF v_attempt >= 10 THEN
                RAISE EXCEPTION 'tenant % stayed busy through % attempts; try again', p_tenant, v_attempt
                    USING ERRCODE = 'lock_not_available';
            END IF;
            PERFORM pg_catalog.pg_sleep(LEAST(0.05 * 2 ^ v_attempt, 2.0)
                                        * (0.5 + pg_catalog.random()));
        END;
    END LOOP;
END
$$;
