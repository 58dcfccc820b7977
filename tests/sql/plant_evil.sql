-- Everything a caller without privileges can plant for a SECURITY DEFINER
-- function to trip over, run in the caller's own session. {victim} is the
-- role the payload would make superuser ({escalate}); every run of the
-- payload inside someone else's rights leaves a row in public.pwned.

CREATE FUNCTION pg_temp.evil() RETURNS boolean LANGUAGE plpgsql AS $evil$
BEGIN
    IF current_user <> {victim} THEN
        INSERT INTO public.pwned (what, ran_as) VALUES ('payload', current_user);
        IF {escalate} THEN
            EXECUTE 'ALTER ROLE ' || pg_catalog.quote_ident({victim}) || ' SUPERUSER';
        END IF;
    END IF;
    RETURN true;
END
$evil$;

CREATE FUNCTION pg_temp.evil_trigger() RETURNS trigger LANGUAGE plpgsql AS $evil$
BEGIN
    PERFORM pg_temp.evil();
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END
$evil$;

-- The temp tables simtrail used to create, with their old columns, and the
-- names of capture's transition tables.
CREATE TEMP TABLE simtrail_keys (table_name text, key jsonb, target_img jsonb, last_img jsonb);
CREATE TEMP TABLE simtrail_net (
    table_name text, key jsonb, target_img jsonb, last_img jsonb, live_img jsonb,
    live_tenant text, action text, drift boolean NOT NULL DEFAULT false);
CREATE TEMP TABLE simtrail_undo (id bigint PRIMARY KEY);
CREATE TEMP TABLE simtrail_cuts (ord bigint, tenant_id text, snapshot pg_snapshot, snap_xmax xid8);
CREATE TEMP TABLE simtrail_segments (
    tenant_id text, xact_id xid8, seg bigint, actor jsonb, rewind_id bigint,
    PRIMARY KEY (tenant_id, xact_id));
CREATE TEMP TABLE simtrail_members (id bigint PRIMARY KEY, net_id bigint NOT NULL, changed_at timestamptz);
CREATE TEMP TABLE simtrail_folded (
    id bigint, net_from bigint, net_count integer, tenant_id text, table_name text,
    row_pk jsonb, before_img jsonb, after_img jsonb, xact_id xid8, changed_at timestamptz);
CREATE TEMP TABLE simtrail_new (id uuid);
CREATE TEMP TABLE simtrail_old (id uuid);

DO $plant$
DECLARE
    v_table text;
    v_type record;
BEGIN
    FOREACH v_table IN ARRAY ARRAY['simtrail_keys', 'simtrail_net', 'simtrail_undo', 'simtrail_cuts',
                                   'simtrail_segments', 'simtrail_members', 'simtrail_folded',
                                   'simtrail_new', 'simtrail_old'] LOOP
        EXECUTE pg_catalog.format('CREATE TRIGGER b BEFORE INSERT OR UPDATE OR DELETE ON pg_temp.%I'
                                  ' FOR EACH ROW EXECUTE FUNCTION pg_temp.evil_trigger()', v_table);
        EXECUTE pg_catalog.format('CREATE TRIGGER a AFTER INSERT OR UPDATE OR DELETE ON pg_temp.%I'
                                  ' FOR EACH ROW EXECUTE FUNCTION pg_temp.evil_trigger()', v_table);
        EXECUTE pg_catalog.format('CREATE TRIGGER bt BEFORE TRUNCATE ON pg_temp.%I'
                                  ' FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.evil_trigger()', v_table);
        EXECUTE pg_catalog.format('CREATE TRIGGER at AFTER TRUNCATE ON pg_temp.%I'
                                  ' FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.evil_trigger()', v_table);
    END LOOP;
    -- A temp domain shadowing every catalog base type (text, jsonb, xid8,
    -- pg_snapshot, regclass, timestamptz, …): its CHECK runs the payload
    -- whenever a value is cast to or stored in it.
    FOR v_type IN
        SELECT t.typname::text AS name FROM pg_catalog.pg_type AS t
        WHERE t.typnamespace = 'pg_catalog'::pg_catalog.regnamespace AND t.typtype = 'b'
          AND t.typcategory <> 'A' AND t.typisdefined
    LOOP
        BEGIN
            EXECUTE pg_catalog.format('CREATE DOMAIN pg_temp.%I AS pg_catalog.%I CHECK (pg_temp.evil())',
                                      v_type.name, v_type.name);
        EXCEPTION WHEN OTHERS THEN
            NULL;
        END;
    END LOOP;
END
$plant$;
-- Pseudo-types cannot be domains; a temp table brings a row type of that name.
CREATE TEMP TABLE record (x integer);
CREATE TEMP TABLE void (x integer);

-- Temp functions overloading catalog functions simtrail calls (pg_temp is
-- never searched for functions, but a caller would try).
CREATE FUNCTION pg_temp.pg_current_xact_id() RETURNS pg_catalog.xid8 LANGUAGE sql
    AS $f$ SELECT CASE WHEN pg_temp.evil() THEN '1'::pg_catalog.xid8 END $f$;
CREATE FUNCTION pg_temp.hashtextextended(pg_catalog.text, pg_catalog.int8) RETURNS pg_catalog.int8
    LANGUAGE sql AS $f$ SELECT CASE WHEN pg_temp.evil() THEN 1::pg_catalog.int8 END $f$;
CREATE FUNCTION pg_temp.current_setting(pg_catalog.text, pg_catalog.bool) RETURNS pg_catalog.text
    LANGUAGE sql AS $f$ SELECT CASE WHEN pg_temp.evil() THEN '{{}}'::pg_catalog.text END $f$;
CREATE FUNCTION pg_temp.clock_timestamp() RETURNS pg_catalog.timestamptz
    LANGUAGE sql AS $f$ SELECT CASE WHEN pg_temp.evil() THEN pg_catalog.now() END $f$;
CREATE FUNCTION pg_temp.to_jsonb(anyelement) RETURNS pg_catalog.jsonb
    LANGUAGE sql AS $f$ SELECT CASE WHEN pg_temp.evil() THEN '{{}}'::pg_catalog.jsonb END $f$;
