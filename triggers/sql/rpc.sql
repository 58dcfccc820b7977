-- The optional RPC surface for PostgREST (`simtrail rpc install`): thin
-- wrappers in schema public, so schema simtrail stays unexposed. Each one
-- admits the caller only when the `sub` of the verified JWT PostgREST put in
-- request.jwt.claims is an instructor of that tenant in simtrail.instructors,
-- which only simtrail's owner can write. EXECUTE goes to `authenticated`
-- alone. Re-run after every upgrade; `simtrail rpc remove` drops them.

-- Raises insufficient_privilege unless the JWT's sub may act for the tenant.
-- Returns the tenant key in canonical form.
CREATE OR REPLACE FUNCTION simtrail.rpc_authorize(p_tenant text)
RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_claims jsonb;
    v_sub text;
    v_tenant text;
BEGIN
    BEGIN
        v_claims := NULLIF(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb;
    EXCEPTION WHEN data_exception THEN
        v_claims := NULL;
    END;
    IF pg_catalog.jsonb_typeof(v_claims) = 'object' THEN
        v_sub := NULLIF(v_claims ->> 'sub', '');
    END IF;
    IF v_sub IS NULL THEN
        RAISE EXCEPTION 'refused: this call needs a signed-in instructor (no sub in the JWT claims)'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    BEGIN
        v_tenant := simtrail.normalize_tenant(p_tenant);
    EXCEPTION WHEN invalid_parameter_value THEN
        v_tenant := NULL;
    END;
    -- The same refusal whether or not the tenant exists: a student learns
    -- nothing about other classes from it.
    IF v_tenant IS NULL OR NOT EXISTS (
           SELECT 1 FROM simtrail.instructors AS i WHERE i.sub = v_sub AND i.tenant_id = v_tenant) THEN
        RAISE EXCEPTION 'refused: % is not an instructor of tenant %', v_sub,
            COALESCE(v_tenant, p_tenant)
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN v_tenant;
END
$$;
REVOKE ALL ON FUNCTION simtrail.rpc_authorize(text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION public.simtrail_rewind(
    p_tenant text, p_target text, p_dry_run boolean DEFAULT true, p_force boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN simtrail.rewind(simtrail.rpc_authorize(p_tenant), p_target, p_dry_run, p_force);
END
$$;

CREATE OR REPLACE FUNCTION public.simtrail_mark(p_tenant text, p_name text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN simtrail.mark(simtrail.rpc_authorize(p_tenant), p_name);
END
$$;

CREATE OR REPLACE FUNCTION public.simtrail_list_marks(p_tenant text)
RETURNS TABLE (id bigint, name text, created_at timestamptz, created_by jsonb)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN QUERY SELECT m.id, m.name, m.created_at, m.created_by
                 FROM simtrail.list_marks(simtrail.rpc_authorize(p_tenant)) AS m;
END
$$;

CREATE OR REPLACE FUNCTION public.simtrail_history(
    p_tenant text, p_limit integer DEFAULT 100, p_since timestamptz DEFAULT NULL,
    p_table text DEFAULT NULL)
RETURNS TABLE (id bigint, changed_at timestamptz, table_name text, operation text,
               row_pk jsonb, old_data jsonb, new_data jsonb, moved text, actor jsonb,
               rewind_id bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN QUERY SELECT h.* FROM simtrail.history(simtrail.rpc_authorize(p_tenant), p_limit,
                                                  p_since, p_table) AS h;
END
$$;

-- Launch a class: the caller must be an instructor of the template and of
-- the new class (whose key the app created in its tenants table).
CREATE OR REPLACE FUNCTION public.simtrail_clone(
    p_from text, p_to text, p_dry_run boolean DEFAULT true)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN simtrail.clone_tenant(simtrail.rpc_authorize(p_from), simtrail.rpc_authorize(p_to),
                                 NULL, p_dry_run);
END
$$;

-- Duplicate a patient (or any row and its subtree): an instructor of the
-- row's class and of the class it goes to.
CREATE OR REPLACE FUNCTION public.simtrail_copy(
    p_table text, p_key jsonb, p_to text, p_options jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_to text := simtrail.rpc_authorize(p_to);
    v_from text;
BEGIN
    -- A key that finds no row is refused like one of another class, so the
    -- answer says nothing about rows the caller may not see.
    BEGIN
        v_from := simtrail.row_tenant(p_table, p_key);
    EXCEPTION WHEN no_data_found OR undefined_table OR invalid_parameter_value THEN
        v_from := NULL;
    END;
    PERFORM simtrail.rpc_authorize(coalesce(v_from, 'the row asked for'));
    RETURN simtrail.copy_subtree(p_table, p_key, v_to, p_options);
END
$$;

-- EXECUTE for `authenticated` only: revoke what PUBLIC and any default
-- privileges (Supabase grants new public functions to anon and others) gave.
DO $$
DECLARE
    f regprocedure;
    g record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'authenticated') THEN
        RAISE EXCEPTION 'role authenticated does not exist: the RPC wrappers are for PostgREST (Supabase); grant a dedicated role instead'
            USING ERRCODE = 'undefined_object';
    END IF;
    FOREACH f IN ARRAY ARRAY['public.simtrail_rewind(text,text,boolean,boolean)',
                             'public.simtrail_mark(text,text)',
                             'public.simtrail_list_marks(text)',
                             'public.simtrail_history(text,integer,timestamptz,text)',
                             'public.simtrail_clone(text,text,boolean)',
                             'public.simtrail_copy(text,jsonb,text,jsonb)']::regprocedure[]
    LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        FOR g IN
            SELECT DISTINCT a.grantee::regrole AS grantee
            FROM pg_catalog.pg_proc AS p, pg_catalog.aclexplode(p.proacl) AS a
            WHERE p.oid = f AND a.grantee <> 0 AND a.grantee <> p.proowner
        LOOP
            EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM %s', f, g.grantee);
        END LOOP;
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO authenticated', f);
    END LOOP;
END
$$;
