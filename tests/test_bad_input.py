"""I9 for install, config and doctor: bad input gives one line on stderr, a
non-zero exit, and changes nothing, not even part of an install."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from tests.catalog import FIXTURE_TABLES, assert_one_line_error, invoke, snapshot
from tests.conftest import Database, run_cli


@dataclass(frozen=True)
class BadRow:
    setup: tuple[str, ...]
    table_name: str  # as the config row names it
    message: str  # a fragment the one-line error must contain


def config_row(table: str, assignments: str = "has_tenant_id = true") -> str:
    columns = [a.split("=")[0].strip() for a in assignments.split(",")]
    values = [a.split("=", 1)[1].strip() for a in assignments.split(",")]
    return (
        "INSERT INTO public.simulation_table_config (table_name, category, "
        + ", ".join(columns)
        + f") VALUES ('{table}', 'clinical', "
        + ", ".join(values)
        + ")"
    )


BAD_ROWS = {
    "missing-table": BadRow(
        (config_row("intake_forms"),),
        "intake_forms",
        "table public.intake_forms does not exist",
    ),
    "no-primary-key": BadRow(
        (
            "CREATE TABLE public.pain_log (tenant_id uuid, score integer)",
            config_row("pain_log"),
        ),
        "pain_log",
        "public.pain_log has no primary key",
    ),
    "patient-path-on-text-mrn": BadRow(
        (
            "CREATE TABLE public.mrn_notes (id uuid PRIMARY KEY, patient_id text, body text)",
            config_row("mrn_notes", "has_patient_id = true"),
        ),
        "mrn_notes",
        "public.mrn_notes.patient_id (text) has no foreign key to public.patients",
    ),
    "parent-not-in-config": BadRow(
        (
            "CREATE TABLE public.user_badges (id uuid PRIMARY KEY,"
            " user_id uuid REFERENCES public.user_profiles (id))",
            config_row("user_badges", "parent_table = 'user_profiles', parent_column = 'user_id'"),
        ),
        "user_badges",
        "goes through public.user_profiles, which is not in simulation_table_config",
    ),
    "parent-missing": BadRow(
        (
            "CREATE TABLE public.panel_notes (id uuid PRIMARY KEY, panel_id uuid)",
            config_row("panel_notes", "parent_table = 'lab_panel', parent_column = 'panel_id'"),
        ),
        "panel_notes",
        "parent table lab_panel of public.panel_notes does not exist",
    ),
}


def assert_refused(db: Database, args: tuple[str, ...], fragment: str) -> str:
    result = run_cli(*args, dsn=db.dsn)
    assert result.exit_code != 0
    assert result.stdout == ""
    line = assert_one_line_error(result.stderr)
    assert fragment in line
    return line


@pytest.mark.parametrize("bad", BAD_ROWS.values(), ids=BAD_ROWS.keys())
def test_install_on_fresh_database_refuses_only_the_bad_row(
    clinic_db: Database, bad: BadRow
) -> None:
    # One bad row must not stop the others from being captured (issue 8, item 10):
    # every valid table is attached, the bad row is named, and the exit is 1
    # (work was done, so not 2).
    for statement in bad.setup:
        clinic_db.sql(statement)
    before = snapshot(clinic_db.dsn)

    result = run_cli("install", dsn=clinic_db.dsn)
    assert result.exit_code == 1, result.stderr
    line = assert_one_line_error(result.stderr)
    assert line.startswith(f"simtrail: error: simulation_table_config row {bad.table_name}: ")
    assert bad.message in line
    attached = [line for line in result.stdout.splitlines() if line.startswith("attach ")]
    assert len(attached) == len(FIXTURE_TABLES)

    after = snapshot(clinic_db.dsn)
    assert after.schema_present
    assert len(after.captured) == len(FIXTURE_TABLES)
    assert f"public.{bad.table_name}" not in after.captured_tables()
    assert after.config == before.config
    doctor = run_cli("doctor", "--json", dsn=clinic_db.dsn)
    assert doctor.exit_code == 1
    findings = json.loads(doctor.stdout)["findings"]
    assert [(f["kind"], f["table_name"]) for f in findings] == [("config", bad.table_name)]


# The tenant-path variants are covered on an installed database by test_doctor.
INSTALLED_CASES = ("missing-table", "no-primary-key", "patient-path-on-text-mrn")


@pytest.mark.parametrize("bad", [BAD_ROWS[c] for c in INSTALLED_CASES], ids=INSTALLED_CASES)
def test_install_and_doctor_on_installed_database_with_bad_row(
    installed_db: Database, bad: BadRow
) -> None:
    for statement in bad.setup:
        installed_db.sql(statement)
    before = snapshot(installed_db.dsn)
    assert len(before.captured) == len(FIXTURE_TABLES)

    assert_refused(installed_db, ("install",), bad.message)
    # Triggers, their hashes, captured_tables (attach times included): all as before.
    assert snapshot(installed_db.dsn) == before

    # doctor names the row on one line of its report, exits 1 and writes nothing.
    result = run_cli("doctor", dsn=installed_db.dsn)
    assert result.exit_code == 1
    assert result.stderr == ""
    lines = [line for line in result.stdout.splitlines() if bad.table_name in line.split()]
    assert len(lines) == 1, result.stdout
    assert lines[0].split()[:2] == ["error", "config"]
    assert bad.message in lines[0]
    assert snapshot(installed_db.dsn) == before


def test_install_refuses_config_table_missing_seed_columns(clinic_db: Database) -> None:
    clinic_db.sql("ALTER TABLE public.simulation_table_config DROP COLUMN parent_column")
    before = snapshot(clinic_db.dsn)
    assert_refused(
        clinic_db,
        ("install",),
        "public.simulation_table_config exists but lacks column(s) parent_column",
    )
    after = snapshot(clinic_db.dsn)
    assert after == before
    assert not after.schema_present


def test_install_dry_run_reports_bad_row_too(clinic_db: Database) -> None:
    for statement in BAD_ROWS["missing-table"].setup:
        clinic_db.sql(statement)
    before = snapshot(clinic_db.dsn)
    result = run_cli("install", "--dry-run", dsn=clinic_db.dsn)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "simtrail: error: simulation_table_config row intake_forms:"
        " table public.intake_forms does not exist"
    ]
    assert result.stdout.splitlines()[-1] == "dry run: nothing was changed"
    assert snapshot(clinic_db.dsn) == before


# `config add` on each kind of bad table: (arguments, what the error says).
CONFIG_ADD_CASES = {
    "missing-table": (
        ("missing_table", "--tenant-column"),
        "missing_table: table public.missing_table does not exist",
    ),
    "no-primary-key": (
        ("pain_log", "--tenant-column"),
        "pain_log: public.pain_log has no primary key",
    ),
    "missing-table-bad-parent": (
        ("x", "--parent", "nope", "--parent-column", "y"),
        "x: table public.x does not exist",
    ),
    "missing-parent": (
        ("panel_notes", "--parent", "nope", "--parent-column", "panel_id"),
        "panel_notes: parent table nope of public.panel_notes does not exist",
    ),
    "malformed-parent": (
        ("panel_notes", "--parent", "a..b", "--parent-column", "panel_id"),
        # PostgreSQL 16 resolves the bad name to nothing, 15 rejects its syntax.
        "panel_notes: parent table a..b of public.panel_notes ",
    ),
    "missing-parent-column": (
        ("panel_notes", "--parent", "lab_panels", "--parent-column", "y"),
        "panel_notes: public.panel_notes has no column y to reach its parent public.lab_panels",
    ),
    "parent-without-column": (
        ("panel_notes", "--parent", "lab_panels"),
        "needs both parent_table and parent_column",
    ),
    "no-tenant-column": (
        ("panel_notes", "--tenant-column"),
        "public.panel_notes is configured with has_tenant_id but has no tenant_id column",
    ),
    "patient-path-on-text-mrn": (
        ("mrn_notes", "--via-patient"),
        "public.mrn_notes.patient_id (text) has no foreign key to public.patients",
    ),
    "already-listed": (
        ("patient_vitals", "--tenant-column"),
        "patient_vitals is already in simulation_table_config",
    ),
    "no-path-given": (
        ("shift_notes",),
        "say how the table reaches its tenant",
    ),
    "two-paths-given": (
        ("shift_notes", "--tenant-column", "--via-patient"),
        "say how the table reaches its tenant",
    ),
}


def test_config_add_refuses_bad_tables(installed_db: Database) -> None:
    # Each refusal must leave everything as it was, so one database serves all.
    installed_db.sql("CREATE TABLE public.pain_log (tenant_id uuid, score integer)")
    installed_db.sql("CREATE TABLE public.panel_notes (id uuid PRIMARY KEY, panel_id uuid)")
    installed_db.sql("CREATE TABLE public.shift_notes (id uuid PRIMARY KEY, tenant_id uuid)")
    installed_db.sql(
        "CREATE TABLE public.mrn_notes (id uuid PRIMARY KEY, patient_id text, body text)"
    )
    before = snapshot(installed_db.dsn)
    for case, (args, message) in CONFIG_ADD_CASES.items():
        # In process: twelve interpreter start-ups would cost more than the test.
        result = invoke(installed_db.dsn, "config", "add", *args)
        assert result.exit_code == 2, case
        assert result.stdout == "", case
        line = assert_one_line_error(result.stderr)
        assert message in line, case
        assert snapshot(installed_db.dsn) == before, case


def test_config_enable_refuses_a_row_that_cannot_be_captured(installed_db: Database) -> None:
    installed_db.sql("CREATE TABLE public.pain_log (tenant_id uuid, score integer)")
    installed_db.sql(config_row("pain_log", "has_tenant_id = true, enabled = false"))
    before = snapshot(installed_db.dsn)
    assert_refused(
        installed_db,
        ("config", "enable", "pain_log"),
        "pain_log: public.pain_log has no primary key",
    )
    after = snapshot(installed_db.dsn)
    assert after == before
    assert [r["enabled"] for r in after.config if r["table_name"] == "pain_log"] == [False]


@pytest.mark.parametrize("command", ["enable", "disable"])
def test_config_enable_disable_unknown_table(installed_db: Database, command: str) -> None:
    before = snapshot(installed_db.dsn)
    assert_refused(
        installed_db,
        ("config", command, "nosuch"),
        "nosuch is not in simulation_table_config",
    )
    assert snapshot(installed_db.dsn) == before


def test_config_disable_refuses_to_strand_a_child(installed_db: Database) -> None:
    # wound_assessments reaches its tenant through patient_wounds.
    before = snapshot(installed_db.dsn)
    assert_refused(
        installed_db,
        ("config", "disable", "patient_wounds"),
        "goes through public.patient_wounds, which is disabled",
    )
    assert snapshot(installed_db.dsn) == before


def test_config_discover_apply_keeps_bad_tables_out(installed_db: Database) -> None:
    installed_db.sql("CREATE TABLE public.pain_log (tenant_id uuid, score integer)")
    before = snapshot(installed_db.dsn)
    result = run_cli("config", "discover", "--apply", "--json", dsn=installed_db.dsn)
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["added"] == []
    assert report["skipped"] == [
        {
            "table_name": "public.pain_log",
            "reason": "public.pain_log has no primary key, so its rows cannot be identified",
        }
    ]
    assert snapshot(installed_db.dsn) == before


MALFORMED_DSN = "host=x port=notanumber ="
UNREACHABLE_DSN = "host=127.0.0.1 port=1 connect_timeout=2"
COMMANDS = {
    "install": ("install",),
    "config-list": ("config", "list"),
    "doctor": ("doctor",),
}


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
def test_malformed_dsn(command: tuple[str, ...]) -> None:
    result = run_cli(*command, dsn=MALFORMED_DSN)
    assert result.exit_code == 2
    assert result.stdout == ""
    line = assert_one_line_error(result.stderr)
    assert line == 'simtrail: error: malformed DSN: invalid connection option ""'


@pytest.mark.parametrize("dsn", ["dbname='unterminated", "postgresql://[bad"], ids=["quote", "uri"])
def test_other_malformed_dsns(dsn: str) -> None:
    result = run_cli("install", dsn=dsn)
    assert result.exit_code == 2
    assert result.stdout == ""
    line = assert_one_line_error(result.stderr)
    assert line.startswith("simtrail: error: malformed DSN: ")


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
def test_unreachable_server(command: tuple[str, ...]) -> None:
    result = run_cli(*command, dsn=UNREACHABLE_DSN)
    assert result.exit_code == 2
    assert result.stdout == ""
    line = assert_one_line_error(result.stderr)
    assert line.startswith("simtrail: error: cannot connect to ")
    assert "port 1 failed" in line


def test_malformed_database_url() -> None:
    result = run_cli("doctor", env={"DATABASE_URL": "dbname='unterminated"})
    assert result.exit_code == 2
    line = assert_one_line_error(result.stderr)
    assert line.startswith("simtrail: error: malformed DSN: ")


def test_connection_error_hides_the_password() -> None:
    result = run_cli("doctor", dsn=f"{UNREACHABLE_DSN} user=nurse password=hunter2")
    assert result.exit_code == 2
    line = assert_one_line_error(result.stderr)
    assert "hunter2" not in line
    assert "password=***" in line


UNKNOWN_TENANT = "00000000-0000-0000-0000-00000000abcd"
# (arguments, needs the database's DSN, what the message says)
JSON_FAILURES = {
    "after-connecting": (("mark", "create", "--tenant", UNKNOWN_TENANT, "launch"), True,
                         f"unknown tenant {UNKNOWN_TENANT}: not in public.tenants"),
    "malformed-dsn": (("status",), False, 'malformed DSN: invalid connection option ""'),
    "not-installed": (("rewind", "--tenant", UNKNOWN_TENANT, "--to", "mark:launch"), True,
                      "simtrail is not installed in this database; run `simtrail install`"),
}


def assert_json_error_like_text(db: Database, case: str) -> None:
    args, connects, message = JSON_FAILURES[case]
    dsn = db.dsn if connects else MALFORMED_DSN
    text = run_cli(*args, dsn=dsn)
    as_json = run_cli(*args, "--json", dsn=dsn)
    assert as_json.exit_code == text.exit_code == 2
    assert as_json.stdout == "" and text.stdout == ""
    assert assert_one_line_error(text.stderr) == f"simtrail: error: {message}"
    lines = as_json.stderr.splitlines()
    assert len(lines) == 1, as_json.stderr
    error = json.loads(lines[0])["error"]
    assert error["message"] == message
    assert error["exit_code"] == 2
    assert error["kind"] == "bad_input"
    if connects:
        assert error["connection"]["database"] == db.name
    else:
        assert "connection" not in error


@pytest.mark.parametrize("case", ["after-connecting", "malformed-dsn"])
def test_with_json_an_error_is_one_json_object_on_stderr(installed_db: Database, case: str) -> None:
    assert_json_error_like_text(installed_db, case)


def test_with_json_not_installed_is_a_json_error(clinic_db: Database) -> None:
    assert_json_error_like_text(clinic_db, "not-installed")


def test_with_json_a_usage_error_is_json_too(installed_db: Database) -> None:
    result = run_cli("mark", "create", "launch", "--json", dsn=installed_db.dsn)
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    error = json.loads(lines[0])["error"]
    assert error == {"message": "Missing option '--tenant' / '-t'.", "kind": "usage",
                     "exit_code": 2}
