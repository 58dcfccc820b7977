"""`simtrail config`: list, add, disable, enable and discover, through the real
CLI. Each change to the config moves the triggers with it in one transaction."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.catalog import CAPTURE_TRIGGERS, FIXTURE_TABLES, invoke, snapshot
from tests.conftest import Database, run_cli


def cli_ok(db: Database, *args: str) -> str:
    result = invoke(db.dsn, *args)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def triggers_on(db: Database, table: str) -> dict[str, str]:
    rows = db.sql(
        "SELECT tgname::text AS name, tgenabled::text AS enabled FROM pg_trigger"
        " WHERE tgrelid = %s::regclass AND tgname LIKE 'simtrail\\_capture\\_%%'",
        (table,),
    )
    return {r["name"]: r["enabled"] for r in rows}


def logged(db: Database, table: str) -> list[dict[str, Any]]:
    return db.sql(
        "SELECT operation, tenant_id, row_pk FROM simtrail.changes WHERE table_name = %s"
        " ORDER BY id",
        (table,),
    )


def config_row(db: Database, table: str) -> dict[str, Any]:
    rows = db.sql("SELECT * FROM public.simulation_table_config WHERE table_name = %s", (table,))
    assert len(rows) == 1
    return rows[0]


def doctor_ok(db: Database) -> None:
    result = invoke(db.dsn, "doctor", "--json")
    assert json.loads(result.stdout)["findings"] == []
    assert result.exit_code == 0


def doctor_gaps(db: Database) -> list[tuple[str, str | None]]:
    """The capture_gap warnings doctor reports, when they are its only findings."""
    result = invoke(db.dsn, "doctor", "--json")
    assert result.exit_code == 0
    findings = json.loads(result.stdout)["findings"]
    assert {(f["severity"], f["kind"]) for f in findings} <= {("warning", "capture_gap")}
    gaps = db.sql("SELECT table_name, closed_at::text AS closed FROM simtrail.capture_gaps")
    assert sorted(f["table_name"] for f in findings) == sorted(g["table_name"] for g in gaps)
    return [(g["table_name"], g["closed"]) for g in gaps]


def test_config_list(installed_db: Database) -> None:
    listed = run_cli("config", "list", "--json", dsn=installed_db.dsn)
    assert listed.exit_code == 0
    rows = json.loads(listed.stdout)
    expected = installed_db.sql(
        "SELECT id, table_name, category, has_tenant_id, has_patient_id, parent_table,"
        " parent_column, enabled, notes FROM public.simulation_table_config ORDER BY table_name"
    )
    assert rows == expected
    assert len(rows) == len(FIXTURE_TABLES)
    by_name = {r["table_name"]: r for r in rows}
    assert by_name["lab_results"]["parent_table"] == "lab_panels"
    assert by_name["lab_results"]["parent_column"] == "panel_id"
    assert by_name["handover_notes"]["has_patient_id"] is True

    human = cli_ok(installed_db, "config", "list").splitlines()
    assert human[0].split() == [
        "table_name",
        "category",
        "enabled",
        "has_tenant_id",
        "has_patient_id",
        "parent_table",
        "parent_column",
    ]
    assert len(human) == 2 + len(FIXTURE_TABLES)
    assert human[2 + sorted(by_name).index("wound_assessments")].split() == [
        "wound_assessments",
        "clinical",
        "yes",
        "no",
        "no",
        "patient_wounds",
        "wound_id",
    ]


# How a new table reaches its tenant, and the flag that says so.
ADD_CASES = {
    "own-tenant-column": (
        "CREATE TABLE public.fluid_balance (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
        " tenant_id uuid NOT NULL, intake_ml integer)",
        ("--tenant-column",),
        "INSERT INTO public.fluid_balance (tenant_id, intake_ml)"
        " SELECT tenant_id, 250 FROM public.patients ORDER BY id LIMIT 1 RETURNING id",
        "SELECT tenant_id::text AS tenant FROM public.patients ORDER BY id LIMIT 1",
    ),
    "via-patient": (
        "CREATE TABLE public.care_goals (id uuid PRIMARY KEY DEFAULT gen_random_uuid(),"
        " patient_id uuid NOT NULL REFERENCES public.patients (id) ON DELETE CASCADE, goal text)",
        ("--via-patient",),
        "INSERT INTO public.care_goals (patient_id, goal)"
        " SELECT id, 'ambulate twice' FROM public.patients ORDER BY id LIMIT 1 RETURNING id",
        "SELECT tenant_id::text AS tenant FROM public.patients ORDER BY id LIMIT 1",
    ),
    "via-parent": (
        "CREATE TABLE public.lab_comments (id uuid PRIMARY KEY DEFAULT gen_random_uuid(),"
        " panel_id uuid NOT NULL REFERENCES public.lab_panels (id) ON DELETE CASCADE, body text)",
        ("--parent", "lab_panels", "--parent-column", "panel_id"),
        "INSERT INTO public.lab_comments (panel_id, body)"
        " SELECT id, 'hemolysed' FROM public.lab_panels ORDER BY id LIMIT 1 RETURNING id",
        "SELECT tenant_id::text AS tenant FROM public.lab_panels ORDER BY id LIMIT 1",
    ),
}


@pytest.mark.parametrize(("create", "path", "insert", "tenant"), ADD_CASES.values(), ids=ADD_CASES)
def test_config_add_captures_the_table(
    seeded_db: Database, create: str, path: tuple[str, ...], insert: str, tenant: str
) -> None:
    seeded_db.sql(create)
    table = create.split()[2]  # public.<name>
    name = table.removeprefix("public.")

    out = cli_ok(seeded_db, "config", "add", name, "--category", "charting", *path)
    assert out.splitlines() == [
        f"added {name}",
        'values: category="charting" (--category)',
        f"attach {table}: no capture trigger yet",
    ]

    row = config_row(seeded_db, name)
    assert row["category"] == "charting"
    assert row["enabled"] is True
    assert row["has_tenant_id"] is ("--tenant-column" in path)
    assert row["has_patient_id"] is ("--via-patient" in path)
    assert triggers_on(seeded_db, table) == dict.fromkeys(CAPTURE_TRIGGERS, "A")

    inserted = seeded_db.sql(insert)
    assert len(inserted) == 1
    expected_tenant = seeded_db.sql(tenant)[0]["tenant"]
    changes = logged(seeded_db, table)
    assert [(c["operation"], c["tenant_id"]) for c in changes] == [("INSERT", expected_tenant)]
    assert list(changes[0]["row_pk"]) == ["id"]
    assert str(changes[0]["row_pk"]["id"]) == str(inserted[0]["id"])
    doctor_ok(seeded_db)


def test_config_add_disabled_does_not_capture(installed_db: Database) -> None:
    installed_db.sql("CREATE TABLE public.shift_notes (id int PRIMARY KEY, tenant_id uuid)")
    out = cli_ok(installed_db, "config", "add", "shift_notes", "--tenant-column", "--disabled")
    assert out.splitlines() == [
        "added shift_notes",
        """values: category="clinical" (simtrail's default; --category to choose)""",
    ]
    assert config_row(installed_db, "shift_notes")["enabled"] is False
    assert triggers_on(installed_db, "public.shift_notes") == {}

    out = cli_ok(installed_db, "config", "enable", "shift_notes")
    assert out.splitlines() == ["attach public.shift_notes: no capture trigger yet"]
    installed_db.sql("INSERT INTO public.shift_notes VALUES (1, gen_random_uuid())")
    assert [c["operation"] for c in logged(installed_db, "public.shift_notes")] == ["INSERT"]


def test_config_disable_then_enable(seeded_db: Database) -> None:
    table = "public.patient_vitals"
    history = logged(seeded_db, table)
    assert len(history) > 0
    function = seeded_db.sql(
        "SELECT function_name FROM simtrail.captured_tables WHERE table_name = %s", (table,)
    )[0]["function_name"]

    out = cli_ok(seeded_db, "config", "disable", "patient_vitals")
    assert out.splitlines() == [f"detach {table}: no longer enabled in simulation_table_config"]
    assert config_row(seeded_db, "patient_vitals")["enabled"] is False
    assert triggers_on(seeded_db, table) == {}
    assert seeded_db.sql(
        "SELECT count(*) AS n FROM simtrail.captured_tables WHERE table_name = %s", (table,)
    ) == [{"n": 0}]
    assert seeded_db.sql("SELECT count(*) AS n FROM pg_proc WHERE proname = %s", (function,)) == [
        {"n": 0}
    ]
    # History is kept, and writes are no longer captured.
    assert logged(seeded_db, table) == history
    seeded_db.sql("UPDATE public.patient_vitals SET heart_rate = heart_rate + 1")
    assert logged(seeded_db, table) == history
    # A disabled table is configured, not uncovered; but its writes are no
    # longer captured, and doctor says since when (a warning: exit 0).
    assert doctor_gaps(seeded_db) == [(table, None)]

    out = cli_ok(seeded_db, "config", "enable", "patient_vitals")
    assert out.splitlines() == [f"attach {table}: no capture trigger yet"]
    assert config_row(seeded_db, "patient_vitals")["enabled"] is True
    assert triggers_on(seeded_db, table) == dict.fromkeys(CAPTURE_TRIGGERS, "A")
    updated = seeded_db.sql(
        "UPDATE public.patient_vitals SET heart_rate = heart_rate - 1 RETURNING id"
    )
    after = logged(seeded_db, table)
    assert after[: len(history)] == history
    assert [c["operation"] for c in after[len(history) :]] == ["UPDATE"] * len(updated)
    # The window stays on record: the update made while detached is not in the log.
    [(name, closed)] = doctor_gaps(seeded_db)
    assert name == table and closed is not None


def test_config_enable_of_an_enabled_table_changes_nothing(installed_db: Database) -> None:
    before = snapshot(installed_db.dsn)
    assert cli_ok(installed_db, "config", "enable", "patients") == ""
    assert snapshot(installed_db.dsn) == before


def test_config_discover_proposes_new_tables(installed_db: Database) -> None:
    installed_db.sql("CREATE TABLE public.shift_reports (id uuid PRIMARY KEY, tenant_id uuid)")
    installed_db.sql(
        "CREATE TABLE public.shift_items (id uuid PRIMARY KEY,"
        " report_id uuid NOT NULL REFERENCES public.shift_reports (id), body text)"
    )
    installed_db.sql(
        "CREATE TABLE public.intake_checks (id uuid PRIMARY KEY,"
        " patient_id uuid NOT NULL REFERENCES public.patients (id))"
    )
    before = snapshot(installed_db.dsn)

    report = json.loads(cli_ok(installed_db, "config", "discover", "--json"))
    tables = {t["table_name"]: t for t in report["tables"]}
    new = {name for name, t in tables.items() if not t["configured"]}
    assert new == {"public.shift_reports", "public.shift_items", "public.intake_checks"}
    assert len(tables) == len(FIXTURE_TABLES) + 3
    assert tables["public.shift_reports"]["reaches_tenant"] == "its tenant_id column"
    assert tables["public.shift_items"]["reaches_tenant"] == "report_id → public.shift_reports"
    assert tables["public.shift_items"]["parent_table"] == "public.shift_reports"
    assert tables["public.shift_items"]["parent_column"] == "report_id"
    assert tables["public.intake_checks"]["reaches_tenant"] == "patient_id → public.patients"
    assert tables["public.intake_checks"]["has_patient_id"] is True
    assert tables["public.lab_results"]["reaches_tenant"] == "panel_id → public.lab_panels"
    assert report["added"] == [] and report["actions"] == []
    # The fixture's user, tenant, catalogue and audit tables are named, with why.
    assert {t["table_name"] for t in report["not_tenant_data"]} == {
        "public.user_profiles",
        "public.tenants",
        "public.programs",
        "public.chart_audit",
    }
    assert snapshot(installed_db.dsn) == before

    human = cli_ok(installed_db, "config", "discover").splitlines()
    assert [line.split()[-1] for line in human if "public.shift_items" in line] == ["no"]
    assert human[-1] == "run with --apply to add the unconfigured tables"
    assert snapshot(installed_db.dsn) == before


def test_config_discover_apply_adds_and_attaches(installed_db: Database) -> None:
    installed_db.sql("CREATE TABLE public.shift_reports (id uuid PRIMARY KEY, tenant_id uuid)")
    installed_db.sql(
        "CREATE TABLE public.shift_items (id uuid PRIMARY KEY,"
        " report_id uuid NOT NULL REFERENCES public.shift_reports (id), body text)"
    )

    report = json.loads(cli_ok(installed_db, "config", "discover", "--apply", "--json"))
    # The child needs its parent in the config first; both make it in.
    assert report["added"] == ["public.shift_reports", "public.shift_items"]
    assert report["skipped"] == []
    assert {(a["action"], a["table_name"]) for a in report["actions"]} == {
        ("attach", "public.shift_reports"),
        ("attach", "public.shift_items"),
    }
    parent = config_row(installed_db, "public.shift_reports")
    child = config_row(installed_db, "public.shift_items")
    assert (parent["has_tenant_id"], parent["enabled"], parent["category"]) == (
        True,
        True,
        "discovered",
    )
    assert (child["parent_table"], child["parent_column"]) == ("public.shift_reports", "report_id")
    for table in ("public.shift_reports", "public.shift_items"):
        assert triggers_on(installed_db, table) == dict.fromkeys(CAPTURE_TRIGGERS, "A")

    tenant = "8b0c5d6e-0000-4000-8000-000000000001"
    installed_db.sql(
        "INSERT INTO public.shift_reports VALUES ('00000000-0000-4000-8000-0000000000aa', %s)",
        (tenant,),
    )
    installed_db.sql(
        "INSERT INTO public.shift_items VALUES"
        " ('00000000-0000-4000-8000-0000000000bb', '00000000-0000-4000-8000-0000000000aa', 'x')"
    )
    assert [c["tenant_id"] for c in logged(installed_db, "public.shift_items")] == [tenant]
    assert [c["tenant_id"] for c in logged(installed_db, "public.shift_reports")] == [tenant]
    doctor_ok(installed_db)

    # A second discovery has nothing left to add.
    again = json.loads(cli_ok(installed_db, "config", "discover", "--apply", "--json"))
    assert again["added"] == [] and again["actions"] == []
    assert all(t["configured"] for t in again["tables"])
