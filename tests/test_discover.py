"""Discovery proposes only tenant data; `config ignore` silences doctor on
purpose (issue 8, item 7).

The fixture has the user's shapes: user_profiles.default_tenant_id → tenants,
tenants.program_id → programs (which has a tenant_id of its own), and an audit
table whose patient reference is nullable. None of them is class data.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg

from tests.catalog import FIXTURE_TABLES, assert_one_line_error, invoke, snapshot
from tests.conftest import Database, run_cli

NOT_TENANT_DATA = {
    "public.tenants": "the tenant table: tenant_id columns point at it",
    "public.programs": "a catalogue: the tenant table public.tenants points at it through"
    " program_id",
    "public.user_profiles": "a user or catalogue table: default_tenant_id → public.tenants"
    " refers to a tenant but is not a tenant_id column",
    "public.chart_audit": "reaches tenant data only through the nullable reference"
    " patient_id → public.patients",
}


def discover(db: Database, *args: str) -> dict[str, Any]:
    result = invoke(db.dsn, "config", "discover", "--json", *args)
    assert result.exit_code == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def doctor(db: Database) -> tuple[int, list[dict[str, Any]]]:
    result = run_cli("doctor", "--json", dsn=db.dsn)
    findings: list[dict[str, Any]] = json.loads(result.stdout)["findings"]
    return result.exit_code, findings


def test_user_tenant_and_catalogue_tables_are_not_proposed(installed_db: Database) -> None:
    db = installed_db
    db.sql("DELETE FROM public.simulation_table_config")
    assert invoke(db.dsn, "install").exit_code == 0

    report = discover(db)
    assert {t["table_name"] for t in report["tables"]} == FIXTURE_TABLES
    assert {t["table_name"]: t["reason"] for t in report["not_tenant_data"]} == NOT_TENANT_DATA
    paths = {t["table_name"]: t["reaches_tenant"] for t in report["tables"]}
    assert paths["public.wound_assessments"] == "wound_id → public.patient_wounds"
    assert paths["public.handover_notes"] == "patient_id → public.patients"

    # doctor calls only the real tenant data uncovered (the detached tables
    # also show as open capture windows, which are warnings).
    code, findings = doctor(db)
    assert code == 1
    assert {(f["kind"], f["table_name"]) for f in findings if f["severity"] == "error"} == {
        ("uncovered", t) for t in FIXTURE_TABLES
    }

    applied = discover(db, "--apply")
    assert set(applied["added"]) == FIXTURE_TABLES
    assert applied["skipped"] == []
    configured = db.sql("SELECT table_name FROM public.simulation_table_config")
    assert {r["table_name"] for r in configured} == FIXTURE_TABLES
    # Only the windows opened by emptying the config remain, as warnings.
    code, findings = doctor(db)
    assert (code, [f for f in findings if f["kind"] != "capture_gap"]) == (0, [])

    # A rewind of a class never touches a user whose default class changed
    # after the mark: user_profiles is not captured at all.
    tenant = db.sql("INSERT INTO public.tenants (name) VALUES ('A') RETURNING id::text AS id")[0]
    user = db.sql(
        "INSERT INTO public.user_profiles (id, full_name, role)"
        " VALUES (gen_random_uuid(), 'Ana', 'student') RETURNING id::text AS id"
    )[0]["id"]
    db.sql(
        "INSERT INTO public.patients (tenant_id, patient_id, first_name, last_name, date_of_birth)"
        " VALUES (%s, 'MRN-1', 'A', 'B', '2000-01-01')",
        (tenant["id"],),
    )
    db.sql("SELECT simtrail.mark(%s, 'launch')", (tenant["id"],))
    db.sql("UPDATE public.user_profiles SET default_tenant_id = %s", (tenant["id"],))
    db.sql("SELECT simtrail.rewind(%s, 'mark:launch', false)", (tenant["id"],))
    assert db.sql(
        "SELECT id::text AS id, default_tenant_id::text AS t FROM public.user_profiles"
    ) == [{"id": user, "t": tenant["id"]}]


def test_only_not_null_references_within_two_hops(installed_db: Database) -> None:
    db = installed_db
    # Three NOT NULL hops: photo → assessment → wound → patient.
    db.sql(
        "CREATE TABLE public.wound_photos (id uuid PRIMARY KEY,"
        " assessment_id uuid NOT NULL REFERENCES public.wound_assessments (id), url text)"
    )
    # Two NOT NULL hops: proposed.
    db.sql(
        "CREATE TABLE public.wound_dressings (id uuid PRIMARY KEY,"
        " wound_id uuid NOT NULL REFERENCES public.patient_wounds (id), kind text)"
    )
    # A nullable reference only.
    db.sql(
        "CREATE TABLE public.order_flags (id uuid PRIMARY KEY,"
        " order_id uuid REFERENCES public.doctors_orders (id), flag text)"
    )
    report = discover(db)
    proposed = {t["table_name"]: t for t in report["tables"] if not t["configured"]}
    assert set(proposed) == {"public.wound_dressings"}
    assert proposed["public.wound_dressings"]["parent_table"] == "public.patient_wounds"
    flagged = {t["table_name"]: t["reason"] for t in report["not_tenant_data"]}
    assert flagged["public.wound_photos"] == (
        "three hops from its tenant (assessment_id → public.wound_assessments);"
        " discovery proposes at most two"
    )
    assert flagged["public.order_flags"] == (
        "reaches tenant data only through the nullable reference order_id → public.doctors_orders"
    )
    code, findings = doctor(db)
    assert code == 1
    assert {(f["kind"], f["table_name"]) for f in findings} == {
        ("uncovered", "public.wound_dressings")
    }

    # Asked for, each is proposed with the path it has.
    asked = discover(db, "--include", "wound_photos", "--include", "public.order_flags")
    proposed = {t["table_name"]: t for t in asked["tables"] if not t["configured"]}
    assert set(proposed) == {"public.wound_dressings", "public.wound_photos", "public.order_flags"}
    assert proposed["public.wound_photos"]["reaches_tenant"] == (
        "assessment_id → public.wound_assessments"
    )
    assert proposed["public.order_flags"]["parent_column"] == "order_id"

    before = snapshot(db.dsn)
    result = run_cli("config", "discover", "--include", "nosuch", dsn=db.dsn)
    assert result.exit_code == 2
    assert assert_one_line_error(result.stderr) == (
        "simtrail: error: --include nosuch: no such table"
    )
    assert snapshot(db.dsn) == before


def test_include_brings_back_the_old_proposal_when_asked(installed_db: Database) -> None:
    report = discover(
        installed_db,
        "--include",
        "user_profiles",
        "--include",
        "tenants",
        "--include",
        "programs",
    )
    paths = {t["table_name"]: t["reaches_tenant"] for t in report["tables"]}
    assert paths["public.programs"] == "its tenant_id column"
    assert paths["public.tenants"] == "program_id → public.programs"
    assert paths["public.user_profiles"] == "default_tenant_id → public.tenants"
    assert {t["table_name"] for t in report["not_tenant_data"]} == {"public.chart_audit"}


def test_ignore_silences_doctor_on_purpose(installed_db: Database) -> None:
    db = installed_db
    db.sql("CREATE TABLE public.class_settings (id uuid PRIMARY KEY, tenant_id uuid, theme text)")
    code, findings = doctor(db)
    assert code == 1
    assert [(f["kind"], f["table_name"]) for f in findings] == [
        ("uncovered", "public.class_settings")
    ]
    assert "simtrail config ignore public.class_settings" in findings[0]["detail"]

    out = invoke(db.dsn, "config", "ignore", "class_settings", "--reason", "UI preferences")
    assert (out.exit_code, out.stdout) == (0, "ignored public.class_settings\n")
    assert doctor(db) == (0, [])
    report = discover(db)
    assert report["ignored"] == [
        {"table_name": "public.class_settings", "reason": "UI preferences"}
    ]
    assert "public.class_settings" not in {t["table_name"] for t in report["tables"]}
    # --apply leaves an ignored table out.
    assert discover(db, "--apply")["added"] == []
    listed = json.loads(invoke(db.dsn, "config", "ignored", "--json").stdout)
    assert [(r["table_name"], r["reason"], r["exists"]) for r in listed] == [
        ("public.class_settings", "UI preferences", True)
    ]

    # Refusals: one line, exit 2, nothing written.
    before = snapshot(db.dsn)
    for args, message in [
        (("ignore", "class_settings"), "public.class_settings is already ignored"),
        (
            ("ignore", "patients"),
            "public.patients is in simulation_table_config; disable it instead of ignoring it",
        ),
        (("ignore", "nosuch"), "table nosuch does not exist"),
        (("unignore", "patients"), "patients is not ignored"),
    ]:
        result = run_cli("config", *args, dsn=db.dsn)
        assert result.exit_code == 2, args
        assert assert_one_line_error(result.stderr) == f"simtrail: error: {message}"
    assert snapshot(db.dsn) == before

    out = invoke(db.dsn, "config", "unignore", "class_settings")
    assert (out.exit_code, out.stdout) == (0, "no longer ignored: public.class_settings\n")
    assert [f["table_name"] for f in doctor(db)[1]] == ["public.class_settings"]

    # A dropped table can still be unignored, and the list says it is gone.
    assert invoke(db.dsn, "config", "ignore", "class_settings").exit_code == 0
    db.sql("DROP TABLE public.class_settings")
    listed = json.loads(invoke(db.dsn, "config", "ignored", "--json").stdout)
    assert [(r["table_name"], r["exists"]) for r in listed] == [("public.class_settings", False)]
    assert invoke(db.dsn, "config", "unignore", "public.class_settings").exit_code == 0
    assert json.loads(invoke(db.dsn, "config", "ignored", "--json").stdout) == []


def test_discover_uses_no_temp_table(installed_db: Database) -> None:
    # A table the caller planted under discover's old temp-table name is never
    # touched, and discovery leaves nothing in pg_temp.
    with psycopg.connect(installed_db.dsn, autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE simtrail_discovered (relid regclass, x int)")
        conn.execute("INSERT INTO pg_temp.simtrail_discovered VALUES (NULL, 42)")
        conn.execute("BEGIN")
        rows = conn.execute(
            "SELECT table_name FROM simtrail.discover(NULL) WHERE status = 'proposed'"
        ).fetchall()
        assert {r[0] for r in rows} == FIXTURE_TABLES
        temp = conn.execute(
            "SELECT c.relname::text FROM pg_class AS c"
            " WHERE c.relnamespace = pg_my_temp_schema() ORDER BY 1"
        ).fetchall()
        conn.execute("COMMIT")
        assert temp == [("simtrail_discovered",)]
        assert conn.execute("SELECT x FROM pg_temp.simtrail_discovered").fetchall() == [(42,)]
    code, findings = doctor(installed_db)
    assert (code, findings) == (0, [])
