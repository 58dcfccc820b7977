"""`simtrail doctor` finds every gap between the config, the schema and the
triggers, and is quiet (exit 0) on a clean install.

Each case creates one gap by hand, the way it happens in real life: a new
feature table, a config row edited in SQL, a trigger dropped or commented by
someone else. The real CLI runs as a subprocess.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

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
            " panel_id uuid REFERENCES public.lab_panels (id), body text)",
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
    # Config problems come first: they block every sync.
    assert [f["kind"] for f in report["findings"]][:2] == ["config", "config"]

    # Config gaps are not something install can guess: it refuses and changes nothing.
    before = snapshot(installed_db.dsn)
    refused = invoke(installed_db.dsn, "install")
    assert refused.exit_code == 2
    assert refused.stderr.startswith("simtrail: error: simulation_table_config row ")
    assert snapshot(installed_db.dsn) == before


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
            }
        ],
    }
    assert snapshot(clinic_db.dsn) == before
