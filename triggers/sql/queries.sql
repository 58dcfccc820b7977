-- Every query the Python side of simtrail runs, by name.

-- name: schema_installed
SELECT pg_catalog.to_regclass('simtrail.schema_version') IS NOT NULL AS installed

-- name: installed_version
SELECT coalesce(max(version), 0) AS version FROM simtrail.schema_version

-- name: record_version
INSERT INTO simtrail.schema_version (version, name) VALUES (%(version)s, %(name)s)

-- name: config_table_exists
SELECT pg_catalog.to_regclass('public.simulation_table_config') IS NOT NULL AS present

-- name: config_table_columns
SELECT a.attname::text AS name, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type
FROM pg_catalog.pg_attribute AS a
WHERE a.attrelid = 'public.simulation_table_config'::regclass AND a.attnum > 0
  AND NOT a.attisdropped

-- name: current_role
SELECT pg_catalog.quote_ident(current_user) AS name

-- name: revoke_config_table
-- Application roles must not switch capture off by editing the config.
REVOKE ALL ON public.simulation_table_config FROM PUBLIC

-- name: app_roles
SELECT r.rolname::text AS name FROM pg_catalog.pg_roles AS r
WHERE r.rolname IN ('anon', 'authenticated')

-- name: revoke_functions
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA simtrail FROM PUBLIC

-- name: install_lock
-- One install, upgrade or uninstall at a time, through a row lock no app role
-- can take. Before schema version 5 there is no such row; two concurrent
-- first installs then collide on creating schema simtrail and one fails,
-- changing nothing.
DO $$
BEGIN
    IF pg_catalog.to_regprocedure('simtrail.take_lock(text,boolean)') IS NOT NULL
       AND pg_catalog.to_regclass('simtrail.locks') IS NOT NULL THEN
        PERFORM simtrail.take_lock('install');
    END IF;
END
$$

-- name: sync
SELECT action, table_name, detail FROM simtrail.sync_all(%(apply)s)

-- name: detach_everything
SELECT name FROM simtrail.detach_everything() AS name

-- name: drop_schema
DROP SCHEMA simtrail CASCADE

-- name: config_list
SELECT c.id, c.table_name, c.category, c.has_tenant_id, c.has_patient_id, c.parent_table,
       c.parent_column, c.enabled, c.notes
FROM public.simulation_table_config AS c
ORDER BY c.table_name

-- name: config_problems
SELECT table_name, problem FROM simtrail.config_problems()

-- name: discover
SELECT table_name, reaches_tenant, has_tenant_id, has_patient_id, parent_table, parent_column,
       configured, status, reason
FROM simtrail.discover(%(include)s::text[])

-- name: config_columns
SELECT column_name, type, not_null, has_default, is_key, required FROM simtrail.config_columns()

-- name: ignore_table
SELECT simtrail.ignore_table(%(table)s, %(reason)s) AS table_name

-- name: unignore_table
SELECT simtrail.unignore_table(%(table)s) AS table_name

-- name: ignored_list
SELECT g.table_name, g.reason, g.ignored_at, g.ignored_by,
       pg_catalog.to_regclass(g.table_name) IS NOT NULL AS exists
FROM simtrail.ignored_tables AS g
ORDER BY g.table_name

-- name: table_exists
SELECT pg_catalog.to_regclass(%(qualified)s) IS NOT NULL AS present

-- name: doctor
SELECT severity, kind, table_name, detail FROM simtrail.doctor()
UNION ALL
SELECT severity, kind, table_name, detail FROM simtrail.schema_findings()
UNION ALL
SELECT severity, kind, table_name, detail FROM simtrail.reference_findings()

-- name: config_table_writers
SELECT grantee, privileges FROM simtrail.config_table_writers()

-- name: captured_tables
SELECT t.table_name, t.pk_columns, t.tenant_path, t.attached_at FROM simtrail.captured_tables AS t
ORDER BY t.table_name

-- name: log_summary
SELECT c.table_name, count(*) AS changes, min(c.changed_at) AS oldest, max(c.changed_at) AS newest
FROM simtrail.changes AS c
GROUP BY c.table_name
ORDER BY c.table_name

-- name: unattributed_changes
SELECT count(*) AS n FROM simtrail.changes AS c WHERE c.tenant_id IS NULL

-- name: config_insert
SELECT simtrail.config_insert(%(values)s) AS row

-- name: config_find
SELECT c.config_id, c.table_name, c.relid::text AS relname, c.enabled
FROM simtrail.config_rows() AS c
WHERE c.table_name = %(name)s OR c.relid = pg_catalog.to_regclass(%(qualified)s)

-- name: config_set_enabled
UPDATE public.simulation_table_config SET enabled = %(enabled)s WHERE id = %(id)s

-- name: problems_for
SELECT p.problem FROM simtrail.config_problems() AS p WHERE p.table_name = %(table_name)s

-- name: mark_create
SELECT simtrail.mark(%(tenant)s, %(name)s, %(replace)s) AS mark

-- name: mark_list
SELECT id, name, created_at, created_by FROM simtrail.list_marks(%(tenant)s)

-- name: mark_delete
SELECT simtrail.delete_mark(%(tenant)s, %(name)s) AS deleted

-- name: rewind
SELECT simtrail.rewind(%(tenant)s, %(target)s, %(dry_run)s, %(force)s, %(nearest)s) AS report

-- name: session_zone
-- The zone a time without a UTC offset is read in, unless --tz names one.
SELECT pg_catalog.current_setting('TimeZone') AS zone

-- name: known_tenant
SELECT simtrail.known_tenant(%(tenant)s) AS tenant

-- name: tenant_state
SELECT table_name, row_count, checksum FROM simtrail.tenant_state(%(tenant)s)

-- name: history
-- The newest entries of the tenant's timeline, newest first: its changes, and
-- its marks at the time each was taken (a change sorts before a mark of the
-- same instant). The caller reverses the list into reading order.
SELECT e.* FROM (
    SELECT 'change' AS kind, c.id, c.changed_at AS at, c.table_name, c.operation, c.row_pk,
           c.old_data, c.new_data, c.moved, c.actor, c.rewind_id, c.xact_id::text AS xact_id,
           NULL::text AS name
    FROM simtrail.simulation_tenant_changes AS c
    WHERE c.tenant_id = %(tenant)s
      AND (%(table)s::text IS NULL OR c.table_name = %(table)s)
      AND (%(since)s::timestamptz IS NULL OR c.changed_at >= %(since)s)
    UNION ALL
    SELECT 'mark', m.id, m.created_at, NULL, NULL, NULL, NULL, NULL, NULL, m.created_by, NULL,
           NULL, m.name
    FROM simtrail.list_marks(%(tenant)s) AS m
    WHERE %(since)s::timestamptz IS NULL OR m.created_at >= %(since)s
) AS e
ORDER BY e.at DESC, e.kind DESC, e.id DESC
LIMIT %(limit)s

-- name: outside_dependents
-- Objects outside schema simtrail that DROP SCHEMA … CASCADE would take with it.
SELECT DISTINCT pg_describe_object(d.classid, d.objid, d.objsubid) AS object
FROM pg_depend AS d
WHERE d.refclassid = 'pg_class'::regclass AND d.deptype = 'n'
  AND d.refobjid IN (SELECT c.oid FROM pg_class AS c
                     WHERE c.relnamespace = 'simtrail'::regnamespace)
  AND NOT (d.classid = 'pg_class'::regclass
           AND d.objid IN (SELECT c.oid FROM pg_class AS c
                           WHERE c.relnamespace = 'simtrail'::regnamespace))
  AND NOT (d.classid = 'pg_rewrite'::regclass
           AND d.objid IN (SELECT r.oid FROM pg_rewrite AS r JOIN pg_class AS v ON v.oid = r.ev_class
                           WHERE v.relnamespace = 'simtrail'::regnamespace))
  AND NOT (d.classid = 'pg_attrdef'::regclass
           AND d.objid IN (SELECT a.oid FROM pg_attrdef AS a JOIN pg_class AS t ON t.oid = a.adrelid
                           WHERE t.relnamespace = 'simtrail'::regnamespace))
  AND NOT (d.classid = 'pg_constraint'::regclass
           AND d.objid IN (SELECT k.oid FROM pg_constraint AS k
                           WHERE k.connamespace = 'simtrail'::regnamespace))
ORDER BY 1

-- name: daemon_status
SELECT simtrail.daemon_stats(interval '24 hours') AS stats,
       (SELECT pg_catalog.max(t.at) FROM simtrail.ticks AS t) AS last_tick,
       pg_catalog.to_regclass('simtrail.daemon_lease') IS NOT NULL AS has_lease

-- name: daemon_leader
-- Whoever holds an unexpired lease whose session is still there (daemon/lease.py).
SELECT l.holder FROM simtrail.daemon_lease AS l
WHERE l.expires_at > pg_catalog.clock_timestamp()
  AND EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity AS a WHERE a.pid = l.holder_pid)

-- name: config_retire
SELECT simtrail.retire_table(%(table_name)s) AS retired
