-- A tenant's history as a function, so a role granted EXECUTE (or the
-- public RPC wrapper) can read one tenant's log without any privilege on
-- the log itself. Re-applied by every install (CREATE OR REPLACE).
-- search_path is `pg_catalog, pg_temp`: see capture.sql.

-- The tenant's changes, newest first: at most p_limit (1 to 10000), only
-- those at or after p_since and of table p_table (a bare name means public)
-- when given.
CREATE OR REPLACE FUNCTION simtrail.history(
    p_tenant text, p_limit integer DEFAULT 100, p_since timestamptz DEFAULT NULL,
    p_table text DEFAULT NULL)
RETURNS TABLE (id bigint, changed_at timestamptz, table_name text, operation text,
               row_pk jsonb, old_data jsonb, new_data jsonb, moved text, actor jsonb,
               rewind_id bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_tenant text := simtrail.known_tenant(p_tenant);
    v_table text := CASE WHEN p_table IS NULL OR pg_catalog.strpos(p_table, '.') > 0 THEN p_table
                         ELSE 'public.' || p_table END;
BEGIN
    IF p_limit IS NULL OR p_limit < 1 OR p_limit > 10000 THEN
        RAISE EXCEPTION 'a history limit must be 1 to 10000' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
        SELECT c.id, c.changed_at, c.table_name, c.operation, c.row_pk, c.old_data, c.new_data,
               c.moved, c.actor, c.rewind_id
        -- The view takes each change's actor from its own cluster generation.
        FROM simtrail.simulation_tenant_changes AS c
        WHERE c.tenant_id = v_tenant
          AND (v_table IS NULL OR c.table_name = v_table)
          AND (p_since IS NULL OR c.changed_at >= p_since)
        ORDER BY c.id DESC
        LIMIT p_limit;
END
$$;
