"""The user's own simulation_table_config, adopted as it is (issue 8, item 6).

Their table has `category` and `delete_order` NOT NULL; other installs add
CHECKs and columns of their own. `config add` and `config discover --apply`
fill such columns from the column's default or from options, say which
values they used, and otherwise refuse naming the column and the option,
writing nothing. The real CLI runs in process (tests.catalog.invoke).
"""

from __future__ import annotations

import json

import pytest

from tests.catalog import CAPTURE_TRIGGERS, assert_one_line_error, invoke, snapshot
from tests.conftest import Database

# The user's constraints, on the fixture's copy of their table.
USERS_CONSTRAINTS = (
    "ALTER TABLE public.simulation_table_config ALTER COLUMN delete_order SET NOT NULL",
    "ALTER TABLE public.simulation_table_config"
    " ADD CONSTRAINT simulation_table_config_category_check CHECK (category IN"
    " ('core', 'clinical', 'medications', 'labs', 'assessments', 'charting'))",
)


@pytest.fixture
def users_db(installed_db: Database) -> Database:
    for statement in USERS_CONSTRAINTS:
        installed_db.sql(statement)
    installed_db.sql(
        "CREATE TABLE public.fluid_balance (id uuid PRIMARY KEY DEFAULT gen_random_uuid(),"
        " tenant_id uuid NOT NULL, intake_ml integer)"
    )
    return installed_db


def config_row(db: Database, table: str) -> dict[str, object]:
    rows = db.sql("SELECT * FROM public.simulation_table_config WHERE table_name = %s", (table,))
    assert len(rows) == 1
    return rows[0]


def triggers_on(db: Database, table: str) -> set[str]:
    rows = db.sql(
        "SELECT tgname::text AS name FROM pg_trigger WHERE tgrelid = %s::regclass"
        " AND tgname LIKE 'simtrail\\_capture\\_%%'",
        (table,),
    )
    return {r["name"] for r in rows}


def refused(db: Database, *args: str) -> str:
    before = snapshot(db.dsn)
    result = invoke(db.dsn, *args)
    assert result.exit_code == 2, result.stdout + result.stderr
    assert result.stdout == ""
    assert snapshot(db.dsn) == before
    return assert_one_line_error(result.stderr)


def test_add_without_delete_order_is_refused_naming_the_option(users_db: Database) -> None:
    line = refused(users_db, "config", "add", "fluid_balance", "--tenant-column")
    assert line == (
        "simtrail: error: simulation_table_config.delete_order is NOT NULL and has no default:"
        " give it with --delete-order N"
    )


def test_add_fills_category_and_delete_order_from_options(users_db: Database) -> None:
    result = invoke(
        users_db.dsn,
        "config",
        "add",
        "fluid_balance",
        "--tenant-column",
        "--category",
        "charting",
        "--delete-order",
        "35",
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        "added fluid_balance",
        'values: category="charting" (--category), delete_order=35 (--delete-order)',
        "attach public.fluid_balance: no capture trigger yet",
    ]
    row = config_row(users_db, "fluid_balance")
    assert (row["category"], row["delete_order"], row["has_tenant_id"], row["enabled"]) == (
        "charting",
        35,
        True,
        True,
    )
    assert triggers_on(users_db, "public.fluid_balance") == CAPTURE_TRIGGERS
    doctor = invoke(users_db.dsn, "doctor", "--json")
    assert json.loads(doctor.stdout)["findings"] == []


def test_a_check_constraint_refuses_the_row(users_db: Database) -> None:
    line = refused(
        users_db,
        "config",
        "add",
        "fluid_balance",
        "--tenant-column",
        "--category",
        "misc",
        "--delete-order",
        "35",
    )
    assert line.startswith("simtrail: error: fluid_balance: new row for relation")
    assert "simulation_table_config_category_check" in line


def test_other_not_null_columns_need_set_and_defaults_are_said(users_db: Database) -> None:
    db = users_db
    db.sql("ALTER TABLE public.simulation_table_config ADD COLUMN owner text")
    db.sql("UPDATE public.simulation_table_config SET owner = 'ops'")
    db.sql("ALTER TABLE public.simulation_table_config ALTER COLUMN owner SET NOT NULL")
    db.sql(
        "ALTER TABLE public.simulation_table_config ADD COLUMN priority integer NOT NULL DEFAULT 5"
    )

    line = refused(db, "config", "add", "fluid_balance", "--tenant-column", "--category", "labs")
    assert line == (
        "simtrail: error: simulation_table_config columns delete_order, owner are NOT NULL and"
        " have no default: give them with --delete-order N, --set owner=VALUE"
    )
    for bad_set, message in [
        ("nosuch=1", "--set nosuch: simulation_table_config has no such column"),
        ("table_name=x", "--set table_name: simtrail sets table_name itself"),
        ("delete_order=3", "--set delete_order: use --delete-order"),
        ("owner", "--set 'owner': expected COLUMN=VALUE"),
    ]:
        line = refused(
            db,
            "config",
            "add",
            "fluid_balance",
            "--tenant-column",
            "--delete-order",
            "1",
            "--set",
            bad_set,
        )
        assert line == f"simtrail: error: {message}"

    result = invoke(
        db.dsn,
        "config",
        "add",
        "fluid_balance",
        "--tenant-column",
        "--delete-order",
        "7",
        "--set",
        "owner=charting-team",
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[1] == (
        'values: owner="charting-team" (--set),'
        """ category="clinical" (simtrail's default; --category to choose),"""
        " delete_order=7 (--delete-order), priority=5 (column default)"
    )
    row = config_row(db, "fluid_balance")
    assert (row["owner"], row["priority"], row["delete_order"], row["category"]) == (
        "charting-team",
        5,
        7,
        "clinical",
    )


def test_a_category_default_of_the_users_table_wins(users_db: Database) -> None:
    users_db.sql(
        "ALTER TABLE public.simulation_table_config ALTER COLUMN category SET DEFAULT 'core'"
    )
    result = invoke(
        users_db.dsn, "config", "add", "fluid_balance", "--tenant-column", "--delete-order", "2"
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[1] == (
        'values: delete_order=2 (--delete-order), category="core" (column default)'
    )
    assert config_row(users_db, "fluid_balance")["category"] == "core"


def test_discover_apply_fills_the_same_columns(users_db: Database) -> None:
    db = users_db
    db.sql(
        "CREATE TABLE public.fluid_items (id uuid PRIMARY KEY,"
        " balance_id uuid NOT NULL REFERENCES public.fluid_balance (id), ml integer)"
    )
    line = refused(db, "config", "discover", "--apply")
    assert line == (
        "simtrail: error: simulation_table_config.delete_order is NOT NULL and has no default:"
        " give it with --delete-order N"
    )
    # Without --category, discovery's "discovered" breaks the user's CHECK:
    # each row is skipped with the reason, nothing is half-added.
    result = invoke(db.dsn, "config", "discover", "--apply", "--delete-order", "5", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["added"] == []
    assert {s["table_name"] for s in report["skipped"]} == {
        "public.fluid_balance",
        "public.fluid_items",
    }
    assert all("simulation_table_config_category_check" in s["reason"] for s in report["skipped"])
    assert db.sql(
        "SELECT count(*) AS n FROM public.simulation_table_config WHERE table_name LIKE '%fluid%'"
    ) == [{"n": 0}]

    result = invoke(
        db.dsn, "config", "discover", "--apply", "--delete-order", "5", "--category", "charting"
    )
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "added public.fluid_balance" in lines and "added public.fluid_items" in lines
    assert 'values: category="charting" (--category), delete_order=5 (--delete-order)' in lines
    for table in ("public.fluid_balance", "public.fluid_items"):
        row = config_row(db, table)
        assert (row["category"], row["delete_order"]) == ("charting", 5)
        assert triggers_on(db, table) == CAPTURE_TRIGGERS
    assert config_row(db, "public.fluid_items")["parent_table"] == "public.fluid_balance"
