"""Invariant I10: application roles cannot touch the log, and every function is locked down."""

from __future__ import annotations

import json

import psycopg
import pytest

from tests.conftest import Database

APP_ROLES = ["authenticated", "anon"]
# The settings that decide how an image spells a value, pinned on every
# generated capture function (tests/test_capture_levers.py shows why).
CAPTURE_PINS = {
    "DateStyle=ISO, YMD",
    "IntervalStyle=postgres",
    "TimeZone=UTC",
    "extra_float_digits=1",
    "bytea_output=hex",
    "lc_monetary=C",
}


def as_role(db: Database, role: str, statement: str) -> str | None:
    """Run one statement as an application role; return the SQLSTATE it failed with."""
    with psycopg.connect(db.dsn) as conn:
        conn.execute(
            "SELECT set_config('request.jwt.claims', %s, true)",
            (json.dumps({"role": role, "sub": "s1"}),),
        )
        conn.execute(f"SET LOCAL ROLE {role}")  # role names are constants above
        try:
            conn.execute(statement.encode())
        except psycopg.Error as exc:
            return exc.sqlstate
        return None


@pytest.mark.parametrize("role", APP_ROLES)
@pytest.mark.parametrize(
    "statement",
    [
        "SELECT * FROM simtrail.changes",
        "SELECT * FROM simtrail.simulation_tenant_changes",
        "SELECT * FROM simtrail.transactions",
        "INSERT INTO simtrail.changes (tenant_id, table_name, operation, row_pk)"
        " VALUES ('x', 'public.patients', 'INSERT', '{}')",
        "UPDATE simtrail.changes SET tenant_id = 'x'",
        "DELETE FROM simtrail.changes",
        "TRUNCATE simtrail.changes",
        "DELETE FROM simtrail.captured_tables",
        "SELECT simtrail.sync(true)",
        "SELECT simtrail.detach_everything()",
        "SELECT simtrail.begin_xact(pg_current_xact_id())",
        "SELECT simtrail.attach('public.patients'::regclass)",
        "SELECT simtrail.rewind((SELECT id::text FROM public.tenants LIMIT 1), 'mark:x', false)",
        "SELECT simtrail.mark((SELECT id::text FROM public.tenants LIMIT 1), 'sneaky')",
        "SELECT * FROM simtrail.marks",
        "SELECT * FROM simtrail.rewinds",
        "SELECT simtrail.purge_tenant((SELECT id::text FROM public.tenants LIMIT 1))",
        "SELECT simtrail.with_tenant_lock((SELECT id::text FROM public.tenants LIMIT 1),"
        " 'simtrail.purge_locked(jsonb)', '{}')",
        "SELECT simtrail.diff_since((SELECT id::text FROM public.tenants LIMIT 1), 'mark:x')",
        "SELECT simtrail.diff_against((SELECT id::text FROM public.tenants LIMIT 1), 'x')",
        "DROP TRIGGER simtrail_capture_insert ON public.patients",
        "ALTER TABLE public.patients DISABLE TRIGGER simtrail_capture_update",
        "UPDATE public.simulation_table_config SET enabled = false",
    ],
)
def test_application_roles_cannot_touch_simtrail(
    seeded_db: Database, role: str, statement: str
) -> None:
    before = seeded_db.sql("SELECT count(*) AS n, max(id) AS last FROM simtrail.changes")
    assert as_role(seeded_db, role, statement) == "42501"  # insufficient_privilege
    assert seeded_db.sql("SELECT count(*) AS n, max(id) AS last FROM simtrail.changes") == before


def test_application_role_writes_are_captured_under_rls(seeded_db: Database) -> None:
    db = seeded_db
    tenant = db.sql("SELECT id::text FROM public.tenants ORDER BY name LIMIT 1")[0]["id"]
    patient = db.sql(
        "SELECT id::text FROM public.patients WHERE tenant_id = %s LIMIT 1", (tenant,)
    )[0]["id"]
    last = db.sql("SELECT max(id) AS id FROM simtrail.changes")[0]["id"]
    with psycopg.connect(db.dsn) as conn:
        claims = {"role": "authenticated", "sub": "s-42", "tenant_id": tenant}
        conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (json.dumps(claims),))
        conn.execute("SET LOCAL ROLE authenticated")
        conn.execute(
            "INSERT INTO public.patient_wounds (patient_id, location, wound_type)"
            " VALUES (%s, 'sacrum', 'pressure injury')",
            (patient,),
        )
        # RLS hides every other class from the student …
        seen = conn.execute("SELECT count(DISTINCT tenant_id) FROM public.patients").fetchone()
        assert seen == (1,)
    # … and the capture trigger still attributes the write to the right class.
    rows = db.sql(
        "SELECT table_name, tenant_id, actor FROM simtrail.simulation_tenant_changes WHERE id > %s",
        (last,),
    )
    assert [(r["table_name"], r["tenant_id"]) for r in rows] == [("public.patient_wounds", tenant)]
    assert rows[0]["actor"]["sub"] == "s-42"


def test_every_function_is_security_definer_with_pinned_search_path(
    installed_db: Database,
) -> None:
    functions = installed_db.sql(
        """
        SELECT p.oid::regprocedure::text AS name, p.prosecdef, p.proconfig,
               EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
                       WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE') AS public_execute
        FROM pg_proc AS p WHERE p.pronamespace = 'simtrail'::regnamespace
        """
    )
    # The generated capture functions count too: there is one per table.
    assert len(functions) > 14
    for fn in functions:
        assert fn["prosecdef"], fn["name"]
        # Capture functions also switch JIT off and pin how images spell
        # values, compaction raises work_mem and steers its plans; nothing
        # may loosen the path.
        # pg_temp comes last: an empty path searches it first for types and
        # relations.
        path = "search_path=pg_catalog, pg_temp"
        assert path in fn["proconfig"], fn["name"]
        generated = fn["name"].startswith("simtrail.capture_") and fn["name"].endswith("()")
        # Planner settings change how a statement runs, never what it reads.
        planner = {"enable_sort=off", "enable_nestloop=off", "plan_cache_mode=force_custom_plan"}
        allowed = {path, "jit=off", "work_mem=64MB", "extra_float_digits=1"} | planner
        # A snapshot export prints values the same way whatever the session.
        pinned = generated or fn["name"] == "simtrail.export_snapshot(text,text)"
        assert set(fn["proconfig"]) <= allowed | (CAPTURE_PINS if pinned else set()), fn["name"]
        if generated:
            assert set(fn["proconfig"]) >= CAPTURE_PINS, fn["name"]
        assert not fn["public_execute"], fn["name"]


def test_schema_and_tables_grant_nothing_to_public(installed_db: Database) -> None:
    grants = installed_db.sql(
        """
        SELECT c.relname, a.privilege_type
        FROM pg_class AS c, aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) AS a
        WHERE c.relnamespace = 'simtrail'::regnamespace AND a.grantee = 0
        UNION ALL
        SELECT n.nspname, a.privilege_type
        FROM pg_namespace AS n, aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) AS a
        WHERE n.nspname = 'simtrail' AND a.grantee = 0
        """
    )
    assert grants == []
