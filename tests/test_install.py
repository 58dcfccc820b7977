"""`simtrail install` and `uninstall`: idempotent, reversible, and never touching
the application's tables or the user's config table."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from simtrail.triggers.installer import latest_version
from tests.catalog import (
    CAPTURE_TRIGGERS,
    FIXTURE_TABLES,
    Catalog,
    invoke,
    snapshot,
    table_contents,
)
from tests.conftest import Database, run_cli

DISABLE_VITALS = (
    "UPDATE public.simulation_table_config SET enabled = false WHERE table_name = 'patient_vitals'"
)


def install(db: Database, *args: str, subprocess: bool = False) -> dict[str, Any]:
    if subprocess:
        result = run_cli("install", "--json", *args, dsn=db.dsn)
    else:
        result = invoke(db.dsn, "install", "--json", *args)
    assert result.exit_code == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    assert report.pop("connection")["database"] == db.name
    return report


def uninstall(db: Database, *args: str) -> dict[str, Any]:
    result = invoke(db.dsn, "uninstall", "--json", *args)
    assert result.exit_code == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    assert report.pop("connection")["database"] == db.name
    return report


def assert_fully_captured(snap: Catalog) -> None:
    """Every fixture table carries exactly our four ALWAYS triggers, hash-commented."""
    assert snap.schema_present
    assert snap.captured_tables() == FIXTURE_TABLES
    assert {c["table_name"] for c in snap.captured} == FIXTURE_TABLES
    hashes = {c["table_name"]: c["trigger_hash"] for c in snap.captured}
    for name in FIXTURE_TABLES:
        ours = [t for t in snap.our_triggers() if t["table_name"] == name]
        assert {t["name"] for t in ours} == CAPTURE_TRIGGERS
        assert {t["enabled"] for t in ours} == {"A"}
        assert {t["comment"] for t in ours} == {f"simtrail {hashes[name]}"}


def assert_nothing_of_ours(snap: Catalog) -> None:
    assert snap.our_triggers() == []
    assert snap.capture_functions() == []


def test_install_twice_changes_nothing(clinic_db: Database) -> None:
    first = install(clinic_db, subprocess=True)
    assert first["from_version"] == 0
    assert first["to_version"] == latest_version()
    assert first["created_config_table"] is False
    assert first["actions"] == [
        {"action": "attach", "table_name": name, "detail": "no capture trigger yet"}
        for name in sorted(FIXTURE_TABLES)
    ]
    after_first = snapshot(clinic_db.dsn)
    assert_fully_captured(after_first)

    second = install(clinic_db, subprocess=True)
    assert second == {
        "dry_run": False,
        "from_version": latest_version(),
        "to_version": latest_version(),
        "created_config_table": False,
        "actions": [],
        "refused": [],
    }
    assert snapshot(clinic_db.dsn) == after_first


def test_install_twice_keeps_the_log(seeded_db: Database) -> None:
    before = snapshot(seeded_db.dsn)
    assert before.log[0]["changes"] > 0
    assert install(seeded_db)["actions"] == []
    assert snapshot(seeded_db.dsn) == before


def test_dry_run_on_a_fresh_database_changes_nothing(clinic_db: Database) -> None:
    before = snapshot(clinic_db.dsn)
    assert not before.schema_present

    report = install(clinic_db, "--dry-run")
    assert report["dry_run"] is True
    assert report["to_version"] == latest_version()
    assert {a["table_name"] for a in report["actions"]} == FIXTURE_TABLES

    after = snapshot(clinic_db.dsn)
    assert after == before
    assert not after.schema_present
    assert_nothing_of_ours(after)


def test_dry_run_with_pending_work_changes_nothing(installed_db: Database) -> None:
    installed_db.sql(DISABLE_VITALS)
    installed_db.sql("CREATE TABLE public.shift_reports (id uuid PRIMARY KEY, tenant_id uuid)")
    installed_db.sql(
        "INSERT INTO public.simulation_table_config (table_name, category, has_tenant_id)"
        " VALUES ('shift_reports', 'clinical', true)"
    )
    before = snapshot(installed_db.dsn)

    report = install(installed_db, "--dry-run")
    assert report["actions"] == [
        {
            "action": "attach",
            "table_name": "public.shift_reports",
            "detail": "no capture trigger yet",
        },
        {
            "action": "detach",
            "table_name": "public.patient_vitals",
            "detail": "no longer enabled in simulation_table_config",
        },
    ]
    assert snapshot(installed_db.dsn) == before

    # The real run does what the dry run announced.
    assert install(installed_db)["actions"] == report["actions"]
    after = snapshot(installed_db.dsn)
    assert after.captured_tables() == FIXTURE_TABLES - {"public.patient_vitals"} | {
        "public.shift_reports"
    }


def test_existing_config_table_is_adopted_with_its_rows(clinic_db: Database) -> None:
    # The user's table may carry more than the seed's columns, and grants of its own.
    clinic_db.sql("ALTER TABLE public.simulation_table_config ADD COLUMN owner text")
    clinic_db.sql("UPDATE public.simulation_table_config SET owner = 'ops-' || id")
    clinic_db.sql(
        "INSERT INTO public.simulation_table_config (table_name, category, enabled, notes, owner)"
        " VALUES ('retired_feature', 'legacy', false, 'kept for the record', 'ops-x')"
    )
    before = snapshot(clinic_db.dsn)
    assert len(before.config) == len(FIXTURE_TABLES) + 1

    report = install(clinic_db)
    assert report["created_config_table"] is False

    after = snapshot(clinic_db.dsn)
    assert after.config == before.config
    # The very same table (not a recreated one), with its columns and grants.
    assert after.config_table == before.config_table

    uninstall(clinic_db, "--drop-log")
    assert snapshot(clinic_db.dsn).config_table == before.config_table
    assert snapshot(clinic_db.dsn).config == before.config


def test_missing_config_table_is_created_empty(clinic_db: Database) -> None:
    clinic_db.sql("DROP TABLE public.simulation_table_config")

    report = install(clinic_db)
    assert report["created_config_table"] is True
    assert report["actions"] == []

    after = snapshot(clinic_db.dsn)
    assert after.config == []
    assert after.config_table[0]["columns"][:3] == ["id", "table_name", "category"]
    assert after.our_triggers() == []
    # Application roles cannot switch capture off through a table we created.
    grants = clinic_db.sql(
        "SELECT has_table_privilege('authenticated', 'public.simulation_table_config', 'UPDATE')"
        " AS can_update"
    )
    assert grants == [{"can_update": False}]

    # A second install adopts what the first created.
    assert install(clinic_db)["created_config_table"] is False


@pytest.mark.parametrize("drop_log", [False, True], ids=["keep-log", "drop-log"])
def test_install_uninstall_install(seeded_db: Database, drop_log: bool) -> None:
    installed = snapshot(seeded_db.dsn)
    assert_fully_captured(installed)
    contents = table_contents(seeded_db.dsn)
    history = table_contents(seeded_db.dsn, "simtrail")
    assert history["simtrail.changes"][0] > 0

    args = ["--drop-log"] if drop_log else []
    result = uninstall(seeded_db, *args)
    assert result == {
        "dry_run": False,
        "detached": sorted(FIXTURE_TABLES),
        "dropped_log": drop_log,
    }

    removed = snapshot(seeded_db.dsn)
    assert_nothing_of_ours(removed)
    # The application's own triggers, rows and config are exactly as they were.
    assert removed.app_triggers() == installed.app_triggers()
    assert removed.config_table == installed.config_table
    assert removed.config == installed.config
    assert table_contents(seeded_db.dsn) == contents
    if drop_log:
        assert not removed.schema_present
        assert removed.functions == []
        assert removed.relations == []
    else:
        assert removed.schema_present
        assert removed.captured == []
        assert removed.versions == installed.versions
        kept = table_contents(seeded_db.dsn, "simtrail")
        for name in ("simtrail.changes", "simtrail.transactions", "simtrail.schema_version"):
            assert kept[name] == history[name]
        assert kept["simtrail.captured_tables"][0] == 0

    report = install(seeded_db)
    assert report["from_version"] == (latest_version() if not drop_log else 0)
    assert {a["table_name"] for a in report["actions"]} == FIXTURE_TABLES

    again = snapshot(seeded_db.dsn)
    assert_fully_captured(again)
    expected = installed.without_times()
    if drop_log:
        expected = dataclasses.replace(expected, log=[{"changes": 0, "transactions": 0}])
    assert again.without_times() == expected, expected.differences(again.without_times())
    assert table_contents(seeded_db.dsn) == contents

    # And capture works again.
    logged = "SELECT count(*) AS n FROM simtrail.changes WHERE table_name = 'public.patient_vitals'"
    before = seeded_db.sql(logged)[0]["n"]
    updated = seeded_db.sql("UPDATE public.patient_vitals SET pain_score = 3 RETURNING id")
    assert len(updated) > 0
    assert seeded_db.sql(logged)[0]["n"] == before + len(updated)


def test_uninstall_dry_run_changes_nothing(seeded_db: Database) -> None:
    before = snapshot(seeded_db.dsn)
    contents = table_contents(seeded_db.dsn)
    result = uninstall(seeded_db, "--dry-run", "--drop-log")
    assert result == {"dry_run": True, "detached": sorted(FIXTURE_TABLES), "dropped_log": True}
    assert snapshot(seeded_db.dsn) == before
    assert table_contents(seeded_db.dsn) == contents


def test_uninstall_removes_strays_and_orphans(installed_db: Database) -> None:
    # A trigger of ours on a table that is no longer enabled (not yet synced),
    # and the function left behind by a captured table that was dropped.
    installed_db.sql(DISABLE_VITALS)
    installed_db.sql("DROP TABLE public.lab_results")
    before = snapshot(installed_db.dsn)
    assert "public.patient_vitals" in before.captured_tables()
    assert [
        f for f in before.functions if f["signature"].startswith("simtrail.capture_lab_results_")
    ]

    result = uninstall(installed_db)
    assert "public.patient_vitals" in result["detached"]

    after = snapshot(installed_db.dsn)
    assert_nothing_of_ours(after)
    assert after.app_triggers() == before.app_triggers()
    assert after.config == before.config


def test_uninstall_when_not_installed_fails_cleanly(clinic_db: Database) -> None:
    before = snapshot(clinic_db.dsn)
    result = invoke(clinic_db.dsn, "uninstall")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "simtrail: error: simtrail is not installed in this database; run `simtrail install`"
    )
    assert snapshot(clinic_db.dsn) == before


def test_drop_log_refuses_to_take_the_users_objects_with_it(installed_db: Database) -> None:
    db = installed_db
    db.sql(
        "CREATE VIEW public.audit_feed AS"
        " SELECT id, tenant_id FROM simtrail.simulation_tenant_changes"
    )
    result = run_cli("uninstall", "--drop-log", dsn=db.dsn)
    assert result.exit_code != 0
    assert "view audit_feed" in result.stderr and "refusing" in result.stderr
    assert db.sql("SELECT to_regclass('simtrail.changes') IS NOT NULL AS kept")[0]["kept"]
    assert (
        db.sql("SELECT count(*) AS n FROM pg_trigger WHERE tgname LIKE 'simtrail_capture_%'")[0][
            "n"
        ]
        > 0
    )
    db.sql("DROP VIEW public.audit_feed")
    assert run_cli("uninstall", "--drop-log", dsn=db.dsn).exit_code == 0
    assert db.sql("SELECT to_regclass('simtrail.changes') IS NULL AS gone")[0]["gone"]
