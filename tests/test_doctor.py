"""`simtrail doctor` finds every gap between the config, the schema and the
triggers, and is quiet (exit 0) on a clean install.

Each case creates one gap by hand, the way it happens in real life: a new
feature table, a config row edited in SQL, a trigger dropped or commented by
someone else. The real CLI runs as a subprocess.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg
import pytest

from simtrail.triggers import doctor_fixes
from simtrail.triggers.installer import latest_version
from tests.catalog import invoke, snapshot
from tests.conftest import Database, run_cli


@dataclass(frozen=True)
class Gap:
    setup: tuple[str, ...]
    kind: str
    table_name: str
    detail: str  # a fragment the finding's detail must contain
    # Findings the same change also causes; nothing else may be reported.
    others: tuple[tuple[str, str], ...] = ()


def config_sql(assignments: str, table: str) -> str:
    return f"UPDATE public.simulation_table_config SET {assignments} WHERE table_name = '{table}'"


GAPS = {
    "new-tenant-table-not-in-config": Gap(
        ("CREATE TABLE public.fluid_balance (id uuid PRIMARY KEY, tenant_id uuid, ml integer)",),
        "uncovered",
        "public.fluid_balance",
        "looks tenant-scoped (its tenant_id column)",
    ),
    "new-child-table-not-in-config": Gap(
        (
            "CREATE TABLE public.lab_comments (id uuid PRIMARY KEY,"
            " panel_id uuid NOT NULL REFERENCES public.lab_panels (id), body text)",
        ),
        "uncovered",
        "public.lab_comments",
        "panel_id → public.lab_panels",
    ),
    "config-row-names-missing-table": Gap(
        (
            "INSERT INTO public.simulation_table_config (table_name, category, has_tenant_id)"
            " VALUES ('intake_forms', 'clinical', true)",
        ),
        "config",
        "intake_forms",
        "table public.intake_forms does not exist",
    ),
    "table-without-primary-key": Gap(
        (
            "CREATE TABLE public.pain_log (tenant_id uuid, score integer)",
            "INSERT INTO public.simulation_table_config (table_name, category, has_tenant_id)"
            " VALUES ('pain_log', 'clinical', true)",
        ),
        "config",
        "pain_log",
        "public.pain_log has no primary key",
    ),
    "patient-path-on-text-mrn": Gap(
        (config_sql("has_tenant_id = false, has_patient_id = true", "bowel_records"),),
        "config",
        "bowel_records",
        "public.bowel_records.patient_id (text) has no foreign key to public.patients",
    ),
    "parent-not-in-config": Gap(
        (
            config_sql(
                "parent_table = 'user_profiles', parent_column = 'assessed_by'",
                "wound_assessments",
            ),
        ),
        "config",
        "wound_assessments",
        "goes through public.user_profiles, which is not in simulation_table_config",
        # The old parent's capture also logs its children's implied moves; it
        # no longer has this child, so what it would render has changed.
        others=(("outdated_trigger", "public.patient_wounds"),),
    ),
    "parent-table-missing": Gap(
        (config_sql("parent_table = 'lab_panel'", "lab_results"),),
        "config",
        "lab_results",
        "parent table lab_panel of public.lab_results does not exist",
        others=(("outdated_trigger", "public.lab_panels"),),
    ),
    "parent-table-malformed": Gap(
        (config_sql("parent_table = 'other_db.public.lab_panels'", "lab_results"),),
        "config",
        "lab_results",
        "parent table other_db.public.lab_panels of public.lab_results is not a valid table name",
        others=(("outdated_trigger", "public.lab_panels"),),
    ),
    "all-triggers-dropped": Gap(
        tuple(
            f"DROP TRIGGER simtrail_capture_{op} ON public.patient_vitals"
            for op in ("insert", "update", "delete", "truncate")
        ),
        "missing_trigger",
        "public.patient_vitals",
        "enabled in the config but not captured",
    ),
    "one-trigger-dropped": Gap(
        ("DROP TRIGGER simtrail_capture_delete ON public.handover_notes",),
        "missing_trigger",
        "public.handover_notes",
        "only 3 of 4 capture triggers present",
    ),
    "trigger-disabled": Gap(
        ("ALTER TABLE public.patients DISABLE TRIGGER simtrail_capture_update",),
        "disabled_trigger",
        "public.patients",
        "disabled",
    ),
    "trigger-not-always": Gap(
        # ENABLE (origin) lets a session in replica mode slip past capture.
        ("ALTER TABLE public.patients ENABLE TRIGGER simtrail_capture_insert",),
        "disabled_trigger",
        "public.patients",
        "disabled",
    ),
    "hash-comment-changed": Gap(
        (
            "COMMENT ON TRIGGER simtrail_capture_update ON public.lab_results"
            " IS 'simtrail 00000000000000000000000000000000'",
        ),
        "outdated_trigger",
        "public.lab_results",
        "differs from what this version renders",
    ),
    "tenant-path-changed": Gap(
        # Still resolvable, but the rendered SQL now goes through patients.
        (config_sql("has_tenant_id = false, has_patient_id = true", "patient_vitals"),),
        "outdated_trigger",
        "public.patient_vitals",
        "differs from what this version renders",
    ),
    "stray-trigger-on-disabled-table": Gap(
        (config_sql("enabled = false", "doctors_orders"),),
        "stray_trigger",
        "public.doctors_orders",
        "not enabled in simulation_table_config",
    ),
    "stray-trigger-on-removed-row": Gap(
        ("DELETE FROM public.simulation_table_config WHERE table_name = 'diabetic_records'",),
        "stray_trigger",
        "public.diabetic_records",
        "not enabled in simulation_table_config",
        others=(("uncovered", "public.diabetic_records"),),
    ),
}


def doctor_json(db: Database) -> tuple[int, dict[str, Any]]:
    result = run_cli("doctor", "--json", dsn=db.dsn)
    assert result.stderr == ""
    report: dict[str, Any] = json.loads(result.stdout)
    return result.exit_code, report


def kinds(report: dict[str, Any]) -> set[tuple[str, str | None]]:
    return {(f["kind"], f["table_name"]) for f in report["findings"]}


def test_clean_install_passes(installed_db: Database) -> None:
    human = run_cli("doctor", dsn=installed_db.dsn)
    assert human.exit_code == 0
    assert human.stdout.strip() == (
        "all enabled tables are captured by current triggers; nothing uncovered"
    )


def test_clean_install_with_history_passes(seeded_db: Database) -> None:
    code, report = doctor_json(seeded_db)
    assert code == 0
    assert report == {"ok": True, "installed_version": latest_version(), "findings": []}


@pytest.mark.parametrize("gap", GAPS.values(), ids=GAPS.keys())
def test_doctor_finds_gap(installed_db: Database, gap: Gap) -> None:
    for statement in gap.setup:
        installed_db.sql(statement)
    before = snapshot(installed_db.dsn)

    code, report = doctor_json(installed_db)
    assert code == 1
    assert report["ok"] is False
    matching = [
        f for f in report["findings"] if f["kind"] == gap.kind and f["table_name"] == gap.table_name
    ]
    assert len(matching) == 1, report["findings"]
    assert matching[0]["severity"] == "error"
    assert gap.detail in matching[0]["detail"]
    assert kinds(report) == {(gap.kind, gap.table_name), *gap.others}

    # Looking changes nothing.
    assert snapshot(installed_db.dsn) == before


# Gaps that `simtrail install` repairs (config gaps need a human), one per
# table so that they can all be open at once.
TRIGGER_GAPS = [
    "one-trigger-dropped",
    "trigger-disabled",
    "hash-comment-changed",
    "tenant-path-changed",
    "stray-trigger-on-disabled-table",
]


def test_install_repairs_trigger_gaps(installed_db: Database) -> None:
    for name in TRIGGER_GAPS:
        for statement in GAPS[name].setup:
            installed_db.sql(statement)
    code, report = doctor_json(installed_db)
    assert code == 1
    assert kinds(report) == {(GAPS[n].kind, GAPS[n].table_name) for n in TRIGGER_GAPS}

    # People read one line per finding.
    human = run_cli("doctor", dsn=installed_db.dsn)
    assert human.exit_code == 1
    for name in TRIGGER_GAPS:
        gap = GAPS[name]
        lines = [
            line
            for line in human.stdout.splitlines()
            if gap.table_name in line.split() and gap.kind in line.split()
        ]
        assert len(lines) == 1, human.stdout

    repaired = invoke(installed_db.dsn, "install", "--json")
    assert repaired.exit_code == 0, repaired.stderr
    actions = {(a["action"], a["table_name"]) for a in json.loads(repaired.stdout)["actions"]}
    assert actions == {
        ("refresh", "public.handover_notes"),
        ("refresh", "public.patients"),
        ("refresh", "public.lab_results"),
        ("refresh", "public.patient_vitals"),
        ("detach", "public.doctors_orders"),
    }
    # Repaired, but not forgotten: where triggers were missing or disabled,
    # or capture was detached, writes may be missing, and doctor keeps saying so.
    code, report = doctor_json(installed_db)
    assert (code, report["ok"]) == (0, True)
    assert {(f["severity"], f["kind"], f["table_name"]) for f in report["findings"]} == {
        ("warning", "capture_gap", "public.patients"),
        ("warning", "capture_gap", "public.handover_notes"),
        ("warning", "capture_gap", "public.doctors_orders"),
    }


def test_doctor_reports_config_and_coverage_gaps_together(installed_db: Database) -> None:
    chosen = [
        "new-tenant-table-not-in-config",
        "table-without-primary-key",
        "patient-path-on-text-mrn",
        "one-trigger-dropped",
    ]
    for name in chosen:
        for statement in GAPS[name].setup:
            installed_db.sql(statement)
    code, report = doctor_json(installed_db)
    assert code == 1
    assert kinds(report) == {(GAPS[n].kind, GAPS[n].table_name) for n in chosen}
    # Sorted by severity, then table (a bare config name means public), then kind.
    assert [(f["kind"], f["table_name"]) for f in report["findings"]] == [
        ("config", "bowel_records"),
        ("uncovered", "public.fluid_balance"),
        ("missing_trigger", "public.handover_notes"),
        ("config", "pain_log"),
    ]

    # Config gaps are not something install can guess: it refuses those rows,
    # leaves their tables as they are, heals the rest and exits 1.
    before = snapshot(installed_db.dsn)
    bowel = [t for t in before.our_triggers() if t["table_name"] == "public.bowel_records"]
    refused = invoke(installed_db.dsn, "install")
    assert refused.exit_code == 1
    assert refused.stdout.splitlines() == [
        "refresh public.handover_notes: capture trigger is missing, disabled or outdated"
    ]
    assert refused.stderr.splitlines() == [
        "simtrail: error: simulation_table_config row bowel_records: "
        + GAPS["patient-path-on-text-mrn"].detail
        + " and does not match its primary key",
        "simtrail: error: simulation_table_config row pain_log: "
        + GAPS["table-without-primary-key"].detail
        + ", so its rows cannot be identified",
    ]
    after = snapshot(installed_db.dsn)
    assert [t for t in after.our_triggers() if t["table_name"] == "public.bowel_records"] == bowel
    code, report = doctor_json(installed_db)
    assert code == 1
    # The refreshed trigger's missing spell is reported as a capture window.
    assert {k for k in kinds(report) if k[0] != "capture_gap"} == {
        (GAPS[n].kind, GAPS[n].table_name) for n in chosen[:3]
    }


def test_doctor_when_not_installed(clinic_db: Database) -> None:
    before = snapshot(clinic_db.dsn)
    code, report = doctor_json(clinic_db)
    assert code == 1
    assert report == {
        "ok": False,
        "installed_version": 0,
        "findings": [
            {
                "severity": "error",
                "kind": "not_installed",
                "table_name": None,
                "detail": "schema simtrail is missing; run `simtrail install`",
                "fix": "simtrail install",
            }
        ],
    }
    assert snapshot(clinic_db.dsn) == before


def test_doctor_says_what_fixes_each_finding_and_the_fixes_work(installed_db: Database) -> None:
    db = installed_db
    chosen = [
        "new-tenant-table-not-in-config",
        "new-child-table-not-in-config",
        "table-without-primary-key",
        "one-trigger-dropped",
        "trigger-disabled",
        "stray-trigger-on-disabled-table",
    ]
    for name in chosen:
        for statement in GAPS[name].setup:
            db.sql(statement)
    code, report = doctor_json(db)
    assert code == 1
    fixes = {(f["kind"], f["table_name"]): f["fix"] for f in report["findings"]}
    assert fixes == {
        ("uncovered", "public.fluid_balance"):
            "simtrail config add public.fluid_balance --tenant-column",
        ("uncovered", "public.lab_comments"):
            "simtrail config add public.lab_comments --parent public.lab_panels"
            " --parent-column panel_id",
        ("config", "pain_log"):
            "correct the row of pain_log in public.simulation_table_config (UPDATE or DELETE it"
            " in SQL), or `simtrail config disable pain_log`",
        ("missing_trigger", "public.handover_notes"): "simtrail install",
        ("disabled_trigger", "public.patients"): "simtrail install",
        ("stray_trigger", "public.doctors_orders"): "simtrail install",
    }
    # People see the fix on the finding's line.
    human = run_cli("doctor", dsn=db.dsn)
    line = next(x for x in human.stdout.splitlines() if "public.fluid_balance" in x.split())
    assert line.endswith("simtrail config add public.fluid_balance --tenant-column")

    # Follow the advice, as printed: doctor is then clean. (The bad row first:
    # it blocks every other config change.)
    for command in (
        "simtrail config disable pain_log",
        fixes[("uncovered", "public.fluid_balance")],
        fixes[("uncovered", "public.lab_comments")],
        "simtrail install",
    ):
        done = invoke(db.dsn, *command.split()[1:])
        assert done.exit_code == 0, (command, done.stderr)
    # The disabled table's detach shows as a capture window (a warning).
    code, report = doctor_json(db)
    report["findings"] = [f for f in report["findings"] if f["kind"] != "capture_gap"]
    assert (code, report) == (
        0,
        {"ok": True, "installed_version": latest_version(), "findings": []},
    )


def test_every_kind_of_finding_has_a_fix() -> None:
    sources = "".join(
        (resources.files("simtrail.triggers") / "sql" / name).read_text()
        for name in (
            "capture.sql",
            "config.sql",
            "daemon.sql",
            "rewind.sql",
            "rebase.sql",
            "refs.sql",
        )
    )
    kinds = set(re.findall(r"kind := '([a-z_]+)'", sources)) | {"not_installed", "outdated_schema"}
    assert {"config", "uncovered", "missing_trigger", "config_writable"} <= kinds
    handled = doctor_fixes.INSTALL_FIXES | {
        "config",
        "uncovered",
        "config_writable",
        "capture_gap",
        "dropped_table",
        "renamed_column",
        "rebase",
        *doctor_fixes.COMMAND_IN_DETAIL,
    }
    assert kinds <= handled, f"no fix suggested for {sorted(kinds - handled)}"


def test_doctor_flags_a_config_table_app_roles_can_write(installed_db: Database) -> None:
    db = installed_db
    db.sql("GRANT INSERT, UPDATE ON public.simulation_table_config TO authenticated")
    db.sql("GRANT TRUNCATE ON public.simulation_table_config TO PUBLIC")
    # The risk is real: as the web app's role, capture of a table can be switched off.
    with psycopg.connect(db.dsn) as conn:
        conn.execute("SET ROLE authenticated")
        conn.execute(
            "UPDATE public.simulation_table_config SET enabled = false"
            " WHERE table_name = 'patient_vitals'"
        )
        conn.rollback()

    code, report = doctor_json(db)
    assert code == 1
    assert kinds(report) == {("config_writable", "public.simulation_table_config")}
    finding = report["findings"][0]
    assert finding["severity"] == "error"
    # anon may TRUNCATE through PUBLIC.
    assert finding["detail"] == (
        "PUBLIC may TRUNCATE; anon may TRUNCATE; authenticated may INSERT, UPDATE, TRUNCATE"
        " it, so an app role can switch capture off"
    )
    assert finding["fix"] == (
        "REVOKE INSERT, UPDATE, TRUNCATE ON public.simulation_table_config"
        " FROM PUBLIC, anon, authenticated"
    )
    db.sql(finding["fix"])
    with psycopg.connect(db.dsn) as conn:
        conn.execute("SET ROLE authenticated")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE public.simulation_table_config SET enabled = false")
    assert doctor_json(db)[0] == 0


def test_doctor_sees_a_column_grant_too(installed_db: Database) -> None:
    installed_db.sql("GRANT UPDATE (enabled) ON public.simulation_table_config TO anon")
    code, report = doctor_json(installed_db)
    assert code == 1
    assert report["findings"][0]["detail"].startswith("anon may UPDATE it")
    installed_db.sql(report["findings"][0]["fix"])
    assert doctor_json(installed_db)[0] == 0
