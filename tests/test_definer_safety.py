"""Invariant I10, as the roles that would attack: no SECURITY DEFINER function
touches an object its caller could have created, and the documented grants
(a dedicated `instructor` role; the public RPC wrappers for PostgREST) let
exactly the right callers in."""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from tests import rewindkit
from tests.conftest import Database, run_cli
from tests.rewindkit import mark, rewind, state

SQL_DIR = Path(__file__).parent / "sql"
_roles = itertools.count()
_schemas = itertools.count()


def plant(conn: psycopg.Connection[Any], victim: str, *, escalate: bool) -> None:
    """Plant every caller-creatable trap in this session (temp tables with
    triggers, temp domains shadowing catalog types, temp functions, and
    operators in a schema the caller owns, first on its search_path)."""
    evil = sql.SQL((SQL_DIR / "plant_evil.sql").read_text()).format(
        victim=sql.Literal(victim), escalate=sql.SQL("true" if escalate else "false")
    )
    conn.execute(evil)
    schema = f"{victim}_ops{next(_schemas)}"
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    operators = sql.SQL((SQL_DIR / "plant_operators.sql").read_text()).format(
        schema=sql.Identifier(schema),
        victim=sql.Literal(victim),
        path=sql.Literal(f'"{schema}", public, pg_catalog'),
    )
    conn.execute(operators)


def payload_runs(db: Database) -> list[dict[str, Any]]:
    return db.sql("SELECT what, ran_as FROM public.pwned")


def is_superuser(db: Database, role: str) -> bool:
    return bool(db.sql("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (role,))[0]["rolsuper"])


@pytest.fixture
def pwned(seeded_db: Database) -> Database:
    seeded_db.sql("CREATE TABLE public.pwned (what text, ran_as text)")
    seeded_db.sql("GRANT INSERT ON public.pwned TO PUBLIC")
    return seeded_db


@pytest.fixture
def instructor(pwned: Database) -> Iterator[str]:
    """A login role given exactly the documented grant, plus CREATE where a
    careless database would allow it (schema public, a schema of its own)."""
    db = pwned
    role = f"instructor_{os.getpid()}_{next(_roles)}"
    with db.server.admin() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER").format(sql.Identifier(role)))
    try:
        granted = run_cli("instructor", "grant-role", role, dsn=db.dsn)
        assert granted.exit_code == 0, granted.stderr
        db.sql(f'GRANT CREATE ON SCHEMA public TO "{role}"')
        db.sql(f'GRANT CREATE ON DATABASE "{db.name}" TO "{role}"')
        yield role
    finally:
        with psycopg.connect(db.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        with db.server.admin() as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def login(db: Database, role: str) -> psycopg.Connection[Any]:
    return psycopg.connect(make_conninfo(db.dsn, user=role), autocommit=True, row_factory=dict_row)


def edit_tenant(db: Database, tenant: str) -> None:
    """Updates, a cascaded delete (children without tenant_id) and inserts."""
    db.sql(
        "UPDATE public.patients SET first_name = first_name || ' (edited)' WHERE tenant_id = %s",
        (tenant,),
    )
    victim = db.sql(
        "SELECT p.id FROM public.patients p WHERE p.tenant_id = %s AND EXISTS"
        " (SELECT 1 FROM public.patient_wounds w WHERE w.patient_id = p.id)"
        " ORDER BY p.patient_id LIMIT 1",
        (tenant,),
    )[0]["id"]
    db.sql("DELETE FROM public.patients WHERE id = %s", (victim,))
    db.sql(
        "INSERT INTO public.patient_wounds (patient_id, location, wound_type)"
        " SELECT id, 'heel', 'pressure injury' FROM public.patients WHERE tenant_id = %s",
        (tenant,),
    )


def test_planted_objects_never_run_during_rewind_mark_and_history(
    pwned: Database, instructor: str
) -> None:
    """The issue's exploit, and every variant of it, as the granted role."""
    db = pwned
    tenant, other = rewindkit.tenants(db)[:2]
    with login(db, instructor) as conn:
        plant(conn, instructor, escalate=True)
        conn.execute("SELECT simtrail.mark(%s, 'm')", (tenant,))
        marks = conn.execute("SELECT name FROM simtrail.list_marks(%s)", (tenant,)).fetchall()
        assert [m["name"] for m in marks] == ["m"]
    at_mark = state(db, tenant)
    edit_tenant(db, tenant)
    expected_plan = rewind(db, tenant, "mark:m", dry_run=True)
    others_before = state(db, other)

    with login(db, instructor) as conn:
        plant(conn, instructor, escalate=True)
        dry = conn.execute("SELECT simtrail.rewind(%s, 'mark:m', true) AS r", (tenant,)).fetchone()
        assert dry is not None
        assert dry["r"]["totals"] == expected_plan["totals"]
        assert dry["r"]["tables"] == expected_plan["tables"]
        assert dry["r"]["totals"]["restored"] > 0 and dry["r"]["totals"]["deleted"] > 0
        done = conn.execute(
            "SELECT simtrail.rewind(%s, 'mark:m', false) AS r", (tenant,)
        ).fetchone()
        assert done is not None
        assert done["r"]["totals"] == expected_plan["totals"]
        history = conn.execute(
            "SELECT table_name, operation, rewind_id FROM simtrail.history(%s, 10000)", (tenant,)
        ).fetchall()
        assert any(h["rewind_id"] == done["r"]["rewind_id"] for h in history)
        assert {h["operation"] for h in history} >= {"INSERT", "UPDATE", "DELETE"}

    assert payload_runs(db) == []
    assert not is_superuser(db, instructor)
    assert state(db, tenant) == at_mark
    assert state(db, other) == others_before


def test_capture_ignores_what_an_app_role_plants(pwned: Database) -> None:
    """Capture triggers run as simtrail's owner on every app write: the same
    traps, planted by `authenticated` before writing, must not fire."""
    db = pwned
    tenant = rewindkit.tenants(db)[0]
    patient = db.sql(
        "SELECT id::text FROM public.patients WHERE tenant_id = %s ORDER BY patient_id LIMIT 1",
        (tenant,),
    )[0]["id"]
    last = db.sql("SELECT coalesce(max(id), 0) AS id FROM simtrail.changes")[0]["id"]
    # A careless database lets app roles create schemas (this one only).
    db.sql(f'GRANT CREATE ON DATABASE "{db.name}" TO authenticated')
    db.sql("GRANT CREATE ON SCHEMA public TO authenticated")
    with psycopg.connect(db.dsn, row_factory=dict_row) as conn:
        claims = {"role": "authenticated", "sub": "s-evil", "tenant_id": tenant}
        conn.execute("SELECT set_config('request.jwt.claims', %s, false)", (json.dumps(claims),))
        conn.execute("SET ROLE authenticated")
        # Never escalate here: `authenticated` is shared by the whole cluster.
        plant(conn, "authenticated", escalate=False)
        with conn.transaction():
            conn.execute(
                "INSERT INTO public.patient_wounds (patient_id, location, wound_type)"
                " VALUES (%s, 'sacrum', 'pressure injury')",
                (patient,),
            )
            conn.execute("UPDATE public.patient_wounds SET stage = '2' WHERE location = 'sacrum'")
            conn.execute("DELETE FROM public.patient_wounds WHERE location = 'sacrum'")
    assert payload_runs(db) == []
    logged = db.sql(
        "SELECT c.operation, c.tenant_id, c.actor ->> 'sub' AS sub"
        " FROM simtrail.simulation_tenant_changes c WHERE c.id > %s ORDER BY c.id",
        (last,),
    )
    assert [(r["operation"], r["tenant_id"], r["sub"]) for r in logged] == [
        ("INSERT", tenant, "s-evil"),
        ("UPDATE", tenant, "s-evil"),
        ("DELETE", tenant, "s-evil"),
    ]


def test_no_simtrail_function_names_pg_temp(installed_db: Database) -> None:
    """What no caller may plant under: temp tables simtrail's own code uses.

    The work tables are simtrail's, and no function body reaches into pg_temp
    (the tenant-discovery temp table and the transaction-start fallback are
    other items of issue 8 and are listed here until they go)."""
    bodies = installed_db.sql(
        "SELECT p.proname, p.prosrc FROM pg_proc p"
        " WHERE p.pronamespace = 'simtrail'::regnamespace AND p.prosrc ILIKE '%%pg_temp.%%'"
    )
    assert {b["proname"] for b in bodies} <= {"discover", "resolve_target"}
    tables = installed_db.sql(
        "SELECT c.relname, c.relpersistence, c.relacl::text AS acl FROM pg_class c"
        " WHERE c.relnamespace = 'simtrail'::regnamespace AND c.relkind = 'r'"
        " AND (c.relname LIKE 'rewind\\_%%' OR c.relname LIKE 'compact\\_%%')"
    )
    assert sorted(t["relname"] for t in tables) == [
        "compact_cuts",
        "compact_segments",
        "rewind_keys",
        "rewind_net",
    ]
    owner = installed_db.sql("SELECT current_user AS u")[0]["u"]
    for t in tables:
        assert t["relpersistence"] == "u", t["relname"]
        # Nobody but the owner holds any privilege.
        assert t["acl"] in (None, f"{{{owner}=arwdDxt/{owner}}}"), t


def test_work_rows_never_outlive_their_call(seeded_db: Database) -> None:
    db = seeded_db
    tenant = rewindkit.tenants(db)[0]
    mark(db, tenant, "m")
    edit_tenant(db, tenant)
    with db.connect() as conn, conn.transaction():
        conn.execute("SELECT simtrail.rewind(%s, 'mark:m', true)", (tenant,))
        conn.execute("SELECT simtrail.rewind(%s, 'mark:m', false)", (tenant,))
        left = conn.execute(
            "SELECT (SELECT count(*) FROM simtrail.rewind_keys)"
            " + (SELECT count(*) FROM simtrail.rewind_net) AS n"
        ).fetchone()
        assert left is not None and left["n"] == 0


def test_two_rewinds_in_one_transaction(seeded_db: Database) -> None:
    db = seeded_db
    first, second = rewindkit.tenants(db)[:2]
    for t in (first, second):
        mark(db, t, "m")
    launched = {t: state(db, t) for t in (first, second)}
    for t in (first, second):
        edit_tenant(db, t)
    plans = {t: rewind(db, t, "mark:m", dry_run=True) for t in (first, second)}
    with db.connect() as conn, conn.transaction():
        reports = [
            conn.execute("SELECT simtrail.rewind(%s, 'mark:m', %s) AS r", (t, dry)).fetchone()
            for t, dry in ((first, True), (first, False), (second, True), (second, False))
        ]
    got = [r["r"] for r in reports if r is not None]
    assert [r["tables"] for r in got] == [
        plans[first]["tables"],
        plans[first]["tables"],
        plans[second]["tables"],
        plans[second]["tables"],
    ]
    assert {t: state(db, t) for t in (first, second)} == launched


def test_concurrent_rewinds_of_two_tenants_keep_their_work_apart(seeded_db: Database) -> None:
    """Each rewind plans from its own rows while the other's are uncommitted."""
    db = seeded_db
    first, second = rewindkit.tenants(db)[:2]
    for t in (first, second):
        mark(db, t, "m")
    launched = {t: state(db, t) for t in (first, second)}
    for t in (first, second):
        edit_tenant(db, t)
    plans = {t: rewind(db, t, "mark:m", dry_run=True)["tables"] for t in (first, second)}
    one, two = db.connect(), db.connect()
    one.execute("BEGIN")
    got_one = one.execute("SELECT simtrail.rewind(%s, 'mark:m', false) AS r", (first,)).fetchone()
    # The first rewind's work rows were deleted at its end but are not yet
    # committed; a concurrent rewind must neither see nor wait for them.
    two.execute("BEGIN")
    started = time.monotonic()
    got_two_dry = two.execute(
        "SELECT simtrail.rewind(%s, 'mark:m', true) AS r", (second,)
    ).fetchone()
    got_two = two.execute("SELECT simtrail.rewind(%s, 'mark:m', false) AS r", (second,)).fetchone()
    two.execute("COMMIT")
    assert time.monotonic() - started < 20
    one.execute("COMMIT")
    assert got_one is not None and got_two is not None and got_two_dry is not None
    assert got_one["r"]["tables"] == plans[first]
    assert got_two_dry["r"]["tables"] == plans[second]
    assert got_two["r"]["tables"] == plans[second]
    assert {t: state(db, t) for t in (first, second)} == launched


def test_concurrent_rewinds_in_threads(seeded_db: Database) -> None:
    db = seeded_db
    tenants = rewindkit.tenants(db)[:3]
    for t in tenants:
        mark(db, t, "m")
    launched = {t: state(db, t) for t in tenants}
    for t in tenants:
        edit_tenant(db, t)
    plans = {t: rewind(db, t, "mark:m", dry_run=True)["tables"] for t in tenants}
    results: dict[str, Any] = {}
    barrier = threading.Barrier(len(tenants))

    def run(tenant: str) -> None:
        with psycopg.connect(db.dsn, row_factory=dict_row) as conn:
            barrier.wait()
            row = conn.execute(
                "SELECT simtrail.rewind(%s, 'mark:m', false) AS r", (tenant,)
            ).fetchone()
            conn.commit()
            results[tenant] = row["r"]["tables"] if row else None

    threads = [threading.Thread(target=run, args=(t,)) for t in tenants]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == plans
    assert {t: state(db, t) for t in tenants} == launched


def _poison_work_table_stats(db: Database) -> None:
    """The statistics autovacuum leaves when it saw the work tables empty but
    could not truncate them: pages on disk, zero rows. A planner that trusts
    them believes every work table holds one row."""
    db.sql(
        "INSERT INTO simtrail.rewind_keys (call_id, table_name, key)"
        " SELECT '1'::xid8, 'x', to_jsonb(g) FROM generate_series(1, 20000) g"
    )
    db.sql(
        "INSERT INTO simtrail.rewind_net (call_id, table_name, key)"
        " SELECT '1'::xid8, 'x', to_jsonb(g) FROM generate_series(1, 20000) g"
    )
    db.sql("DELETE FROM simtrail.rewind_keys")
    db.sql("DELETE FROM simtrail.rewind_net")
    db.sql("ANALYZE simtrail.rewind_keys")
    db.sql("ANALYZE simtrail.rewind_net")
    for row in db.sql(
        "SELECT relname, relpages, reltuples FROM pg_class"
        " WHERE oid IN ('simtrail.rewind_keys'::regclass, 'simtrail.rewind_net'::regclass)"
    ):
        assert row["relpages"] > 0 and row["reltuples"] == 0, row


def test_a_rewind_of_thousands_of_rows_stays_linear_when_stats_say_empty(
    seeded_db: Database,
) -> None:
    """Temp tables started every call unanalysed, so the planner sized them from
    their pages; shared work tables carry whatever autovacuum last saw."""
    db = seeded_db
    tenant, other = rewindkit.tenants(db)[:2]
    # Another class's wound assessments: the foreign-key check scans them
    # (wound_id has no index) for the wounds this rewind removes.
    db.sql(
        "INSERT INTO public.wound_assessments (wound_id, drainage)"
        " SELECT w.id, 'serous' FROM public.patient_wounds w"
        " JOIN public.patients p ON p.id = w.patient_id, generate_series(1, 25000) g"
        " WHERE p.tenant_id = %s AND g <= 25000 / (SELECT count(*) FROM public.patient_wounds w2"
        "   JOIN public.patients p2 ON p2.id = w2.patient_id WHERE p2.tenant_id = %s)",
        (other, other),
    )
    mark(db, tenant, "m")
    at_mark = state(db, tenant)

    def grow(per_patient: int) -> None:
        db.sql(
            "INSERT INTO public.patient_vitals (tenant_id, patient_id, heart_rate)"
            " SELECT p.tenant_id, p.id, g FROM public.patients p, generate_series(1, %s) g"
            " WHERE p.tenant_id = %s",
            (per_patient, tenant),
        )
        db.sql(
            "INSERT INTO public.patient_wounds (patient_id, location, wound_type)"
            " SELECT p.id, 'site ' || g, 'pressure injury'"
            " FROM public.patients p, generate_series(1, %s) g WHERE p.tenant_id = %s",
            (per_patient, tenant),
        )
        db.sql(
            "UPDATE public.patients SET first_name = first_name || '.' WHERE tenant_id = %s",
            (tenant,),
        )

    def timed_rewind() -> tuple[float, dict[str, Any]]:
        _poison_work_table_stats(db)
        started = time.monotonic()
        report = rewind(db, tenant, "mark:m")
        return time.monotonic() - started, report

    grow(100)
    small_time, small = timed_rewind()
    assert small["totals"]["deleted"] >= 800
    assert state(db, tenant) == at_mark
    grow(400)
    big_time, big = timed_rewind()
    assert big["totals"]["deleted"] == 4 * small["totals"]["deleted"]
    assert state(db, tenant) == at_mark
    # Four times the rows: linear work takes about four times as long; a
    # plan that rescans a work table per row takes sixteen.
    assert big_time < max(8 * small_time, 1.5), (small_time, big_time)


# The public RPC wrappers, as PostgREST calls them: SET ROLE to the JWT's
# role with request.jwt.claims set from the verified token.

RPC_CALLS = {
    "rewind": "SELECT public.simtrail_rewind(%(tenant)s, 'mark:m', false) AS r",
    "dry_run": "SELECT public.simtrail_rewind(%(tenant)s, 'mark:m', true) AS r",
    "mark": "SELECT public.simtrail_mark(%(tenant)s, 'sneaky') AS r",
    "list_marks": "SELECT count(*) AS r FROM public.simtrail_list_marks(%(tenant)s)",
    "history": "SELECT count(*) AS r FROM public.simtrail_history(%(tenant)s)",
}


def as_jwt(
    db: Database, role: str, sub: str | None, statement: str, params: dict[str, Any]
) -> tuple[str | None, str, Any]:
    """(SQLSTATE or None, error message, first value) of one call as PostgREST would make it."""
    with psycopg.connect(db.dsn, row_factory=dict_row) as conn:
        claims: dict[str, Any] = {"role": role}
        if sub is not None:
            claims["sub"] = sub
        conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (json.dumps(claims),))
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
        try:
            row = conn.execute(statement, params).fetchone()
        except psycopg.Error as exc:
            return exc.sqlstate, exc.diag.message_primary or "", None
        conn.commit()
        return None, "", row["r"] if row else None


@pytest.fixture
def rpc_db(seeded_db: Database) -> Database:
    db = seeded_db
    installed = run_cli("rpc", "install", "--json", dsn=db.dsn)
    assert installed.exit_code == 0, installed.stderr
    functions = json.loads(installed.stdout)
    assert len(functions) == 6
    assert all(f["granted_to"] == ["authenticated"] for f in functions), functions
    first, second = rewindkit.tenants(db)[:2]
    for sub, tenant in (("teacher-a", first), ("teacher-b", second)):
        added = run_cli("instructor", "add", "--sub", sub, "--tenant", tenant, dsn=db.dsn)
        assert added.exit_code == 0, added.stderr
    for t in (first, second):
        mark(db, t, "m")
    return db


def _written(db: Database) -> dict[str, Any]:
    return db.sql(
        "SELECT (SELECT count(*) FROM simtrail.changes) AS changes,"
        " (SELECT count(*) FROM simtrail.marks) AS marks,"
        " (SELECT count(*) FROM simtrail.rewinds) AS rewinds"
    )[0]


@pytest.mark.parametrize("call", sorted(RPC_CALLS))
@pytest.mark.parametrize(
    ("role", "sub", "sqlstate", "message"),
    [
        ("anon", None, "42501", "permission denied for function"),
        ("authenticated", None, "42501", "needs a signed-in instructor"),
        ("authenticated", "student-1", "42501", "student-1 is not an instructor of tenant"),
        ("authenticated", "teacher-b", "42501", "teacher-b is not an instructor of tenant"),
    ],
)
def test_rpc_refuses_everyone_but_the_tenants_instructors(
    rpc_db: Database, call: str, role: str, sub: str | None, sqlstate: str, message: str
) -> None:
    db = rpc_db
    tenant = rewindkit.tenants(db)[0]
    edit_tenant(db, tenant)
    before, tenant_before = _written(db), state(db, tenant)
    got, text, _ = as_jwt(db, role, sub, RPC_CALLS[call], {"tenant": tenant})
    assert (got, message in text) == (sqlstate, True), text
    assert _written(db) == before
    assert state(db, tenant) == tenant_before


def test_rpc_refuses_unknown_tenants_and_forged_claims_alike(rpc_db: Database) -> None:
    db = rpc_db
    for tenant in ("not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        got, text, _ = as_jwt(
            db, "authenticated", "teacher-a", RPC_CALLS["history"], {"tenant": tenant}
        )
        assert got == "42501" and "not an instructor" in text, text
    with psycopg.connect(db.dsn) as conn:
        conn.execute("SELECT set_config('request.jwt.claims', 'not json', true)")
        conn.execute("SET LOCAL ROLE authenticated")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(RPC_CALLS["history"], {"tenant": rewindkit.tenants(db)[0]})


def test_rpc_lets_the_tenants_instructor_mark_rewind_and_read(rpc_db: Database) -> None:
    db = rpc_db
    tenant, other = rewindkit.tenants(db)[:2]
    at_mark = state(db, tenant)
    edit_tenant(db, tenant)
    others = state(db, other)
    params = {"tenant": tenant}
    got, text, dry = as_jwt(db, "authenticated", "teacher-a", RPC_CALLS["dry_run"], params)
    assert got is None, text
    assert dry["dry_run"] and dry["totals"]["deleted"] > 0
    got, text, done = as_jwt(db, "authenticated", "teacher-a", RPC_CALLS["rewind"], params)
    assert got is None, text
    assert done["totals"] == dry["totals"]
    assert state(db, tenant) == at_mark
    assert state(db, other) == others
    got, text, marked = as_jwt(db, "authenticated", "teacher-a", RPC_CALLS["mark"], params)
    assert got is None and marked["name"] == "sneaky", text
    assert as_jwt(db, "authenticated", "teacher-a", RPC_CALLS["list_marks"], params)[2] == 2
    assert as_jwt(db, "authenticated", "teacher-a", RPC_CALLS["history"], params)[2] > 0
    who = db.sql("SELECT created_by ->> 'sub' AS sub FROM simtrail.marks WHERE name = 'sneaky'")
    assert who == [{"sub": "teacher-a"}]


def test_rpc_clone_and_copy_need_an_instructor_of_both_classes(rpc_db: Database) -> None:
    db = rpc_db
    first, second = rewindkit.tenants(db)[:2]
    fresh = str(uuid.uuid4())
    db.sql("INSERT INTO public.tenants (id, name) VALUES (%s, 'launched over RPC')", (fresh,))
    patient = str(
        db.sql("SELECT id FROM public.patients WHERE tenant_id = %s LIMIT 1", (first,))[0]["id"]
    )
    clone = "SELECT public.simtrail_clone(%(from)s, %(to)s, false) AS r"
    copy = "SELECT public.simtrail_copy('patients', %(key)s, %(to)s) AS r"
    key = json.dumps({"id": patient})
    before = _written(db)
    for sub, params in (
        ("teacher-a", {"from": first, "to": fresh}),  # not an instructor of the new class
        ("teacher-b", {"from": first, "to": second}),  # not of the template
    ):
        got, text, _ = as_jwt(db, "authenticated", sub, clone, params)
        assert got == "42501" and "not an instructor" in text, text
    for sub, params in (
        ("teacher-b", {"key": key, "to": second}),  # not of the patient's class
        ("teacher-b", {"key": json.dumps({"id": str(uuid.uuid4())}), "to": second}),
    ):
        got, text, _ = as_jwt(db, "authenticated", sub, copy, params)
        assert got == "42501" and "not an instructor" in text, text
    assert _written(db) == before
    run_cli("instructor", "add", "--sub", "teacher-a", "--tenant", fresh, dsn=db.dsn)
    got, text, report = as_jwt(
        db, "authenticated", "teacher-a", clone, {"from": first, "to": fresh}
    )
    assert got is None, text
    rows = sum(n for n, _ in state(db, first).values())
    assert report["totals"]["rows"] == rows == sum(n for n, _ in state(db, fresh).values())


def test_rpc_admits_only_while_listed(rpc_db: Database) -> None:
    db = rpc_db
    tenant = rewindkit.tenants(db)[0]
    listed = run_cli("instructor", "list", "--json", dsn=db.dsn)
    assert listed.exit_code == 0, listed.stderr
    assert {(r["sub"], r["tenant"]) for r in json.loads(listed.stdout)} == {
        ("teacher-a", tenant),
        ("teacher-b", rewindkit.tenants(db)[1]),
    }
    removed = run_cli("instructor", "remove", "--sub", "teacher-a", "--tenant", tenant, dsn=db.dsn)
    assert removed.exit_code == 0, removed.stderr
    got, text, _ = as_jwt(
        db, "authenticated", "teacher-a", RPC_CALLS["history"], {"tenant": tenant}
    )
    assert got == "42501", text
    again = run_cli("instructor", "remove", "--sub", "teacher-a", "--tenant", tenant, dsn=db.dsn)
    assert again.exit_code == 2 and again.stderr.count("\n") == 1, again.stderr
    bad = run_cli("instructor", "add", "--sub", "", "--tenant", tenant, dsn=db.dsn)
    assert bad.exit_code == 2 and "sub" in bad.stderr
    bad = run_cli("instructor", "add", "--sub", "x", "--tenant", "nope", dsn=db.dsn)
    assert bad.exit_code == 2 and "not a valid" in bad.stderr, bad.stderr
    assert run_cli("rpc", "remove", dsn=db.dsn).exit_code == 0
    assert db.sql("SELECT count(*) AS n FROM pg_proc WHERE proname LIKE 'simtrail\\_%%'") == [
        {"n": 0}
    ]


def test_app_roles_cannot_read_or_write_the_instructors(rpc_db: Database) -> None:
    db = rpc_db
    for role in ("anon", "authenticated"):
        for statement in (
            "SELECT * FROM simtrail.instructors",
            "INSERT INTO simtrail.instructors (sub, tenant_id) VALUES ('me', 'x')",
            "SELECT simtrail.rpc_authorize('x')",
            "SELECT * FROM simtrail.rewind_net",
        ):
            got, _, _ = as_jwt(db, role, "student-1", statement, {})
            assert got == "42501", (role, statement)


def test_uninstall_with_the_log_takes_the_wrappers_too(rpc_db: Database) -> None:
    db = rpc_db
    done = run_cli("uninstall", "--drop-log", dsn=db.dsn)
    assert done.exit_code == 0, done.stderr
    assert db.sql("SELECT count(*) AS n FROM pg_proc WHERE proname LIKE 'simtrail\\_%%'") == [
        {"n": 0}
    ]


def test_rpc_install_needs_simtrail_and_says_so(clinic_db: Database) -> None:
    done = run_cli("rpc", "install", dsn=clinic_db.dsn)
    assert done.exit_code == 2 and "not installed" in done.stderr, done.stderr


def test_the_dedicated_role_grant_is_exactly_rewind_mark_and_history(
    pwned: Database, instructor: str
) -> None:
    db = pwned
    tenant = rewindkit.tenants(db)[0]
    mark(db, tenant, "m")
    refused = [
        "SELECT * FROM simtrail.changes",
        "SELECT * FROM simtrail.instructors",
        "SELECT * FROM simtrail.rewind_net",
        "INSERT INTO simtrail.rewind_keys (call_id, table_name, key) VALUES ('1', 'x', '{}')",
        "SELECT simtrail.sync(true)",
        "SELECT simtrail.rewind_plan('x', 'mark:m', false)",
        "SELECT simtrail.rewind_apply('x')",
        "SELECT simtrail.compact_batch('1 hour', 10)",
        "SELECT simtrail.delete_mark('x', 'm')",
        "SELECT simtrail.apply_retention(1)",
        "SELECT secret FROM simtrail.seal_secret",
        "SELECT simtrail.seal_batch(10)",
        "SELECT simtrail.verify_chains(NULL, true)",
        "SELECT simtrail.append_record('export', '{\"kind\": \"export\"}')",
        "UPDATE simtrail.chain_heads SET seq = 1",
        "CREATE TABLE simtrail.mine (x int)",
    ]
    for statement in refused:
        with login(db, instructor) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)
    with login(db, instructor) as conn:
        assert conn.execute("SELECT count(*) AS n FROM simtrail.history(%s)", (tenant,)).fetchone()
    revoked = run_cli("instructor", "grant-role", instructor, "--revoke", dsn=db.dsn)
    assert revoked.exit_code == 0, revoked.stderr
    with login(db, instructor) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT simtrail.rewind(%s, 'mark:m', true)", (tenant,))
    missing = run_cli("instructor", "grant-role", "no_such_role_xyz", dsn=db.dsn)
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
