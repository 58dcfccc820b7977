-- Named queries behind `simtrail rpc` and `simtrail instructor`.

-- name: rpc_remove
DROP FUNCTION IF EXISTS public.simtrail_rewind(text, text, boolean, boolean);
DROP FUNCTION IF EXISTS public.simtrail_mark(text, text);
DROP FUNCTION IF EXISTS public.simtrail_list_marks(text);
DROP FUNCTION IF EXISTS public.simtrail_history(text, integer, timestamptz, text);
DROP FUNCTION IF EXISTS public.simtrail_clone(text, text, boolean);
DROP FUNCTION IF EXISTS public.simtrail_copy(text, jsonb, text, jsonb);
DROP FUNCTION IF EXISTS simtrail.rpc_authorize(text)

-- name: rpc_installed
SELECT p.oid::regprocedure::text AS name,
       ARRAY(SELECT DISTINCT a.grantee::regrole::text
             FROM pg_catalog.aclexplode(p.proacl) AS a
             WHERE a.privilege_type = 'EXECUTE' AND a.grantee <> 0 AND a.grantee <> p.proowner
             ORDER BY 1) AS granted_to
FROM pg_catalog.pg_proc AS p
WHERE p.pronamespace = 'public'::regnamespace AND p.proname LIKE 'simtrail\_%'
ORDER BY 1

-- name: instructor_add
INSERT INTO simtrail.instructors (sub, tenant_id)
VALUES (%(sub)s, simtrail.normalize_tenant(%(tenant)s))
ON CONFLICT (sub, tenant_id) DO NOTHING
RETURNING sub, tenant_id

-- name: instructor_remove
DELETE FROM simtrail.instructors
WHERE sub = %(sub)s AND tenant_id = simtrail.normalize_tenant(%(tenant)s)
RETURNING sub, tenant_id

-- name: instructor_list
SELECT i.sub, i.tenant_id AS tenant, i.added_at, i.added_by
FROM simtrail.instructors AS i
WHERE %(tenant)s::text IS NULL OR i.tenant_id = simtrail.normalize_tenant(%(tenant)s)
ORDER BY i.tenant_id, i.sub

-- name: grant_role
-- The plain-SQL alternative to the wrappers: a dedicated database role that
-- may rewind, mark and read the history of every tenant (no per-tenant check).
GRANT USAGE ON SCHEMA simtrail TO {role};
GRANT EXECUTE ON FUNCTION simtrail.rewind(text, text, boolean, boolean),
                          simtrail.mark(text, text),
                          simtrail.list_marks(text),
                          simtrail.history(text, integer, timestamptz, text),
                          simtrail.clone_tenant(text, text, text, boolean),
                          simtrail.copy_subtree(text, jsonb, text, jsonb)
    TO {role}

-- name: revoke_role
REVOKE EXECUTE ON FUNCTION simtrail.rewind(text, text, boolean, boolean),
                           simtrail.mark(text, text),
                           simtrail.list_marks(text),
                           simtrail.history(text, integer, timestamptz, text),
                           simtrail.clone_tenant(text, text, text, boolean),
                           simtrail.copy_subtree(text, jsonb, text, jsonb)
    FROM {role};
REVOKE USAGE ON SCHEMA simtrail FROM {role}

-- name: role_is_superuser
SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname = %(role)s
