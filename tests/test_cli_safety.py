"""What the CLI does when the server goes away under it, and where the demo runs.

Both through the real `simtrail` command in a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from tests import rewindkit
from tests.catalog import assert_one_line_error
from tests.conftest import Database, Server, run_cli

INTERRUPTIONS = {
    "pg_cancel_backend": "interrupted: the server cancelled the statement",
    # The client sees the server's FATAL, or only the closed socket.
    "pg_terminate_backend": "interrupted: the ",
}


def cli_process(*args: str, dsn: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "DATABASE_URL"))}
    return subprocess.Popen(
        [sys.executable, "-m", "simtrail.cli.main", "--dsn", dsn, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def waiting_backend(db: Database, application: str, timeout: float = 30.0) -> int:
    """The pid of the CLI's backend once it waits for the class's lock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = db.sql(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = %s AND state = 'active'"
            " AND (wait_event_type = 'Lock' OR wait_event = 'PgSleep')",
            (application,),
        )
        if rows:
            return int(rows[0]["pid"])
        time.sleep(0.01)
    raise AssertionError(f"no backend of {application!r} ever waited on a lock")


# Commands that take a class's lock and write: their arguments, and a bad
# tenant (None: the real one) with bad arguments.
LOCKING_COMMANDS: dict[str, tuple[tuple[str, ...], str | None, tuple[str, ...]]] = {
    "rewind": (("--to", "mark:launch"), None, ("--to", "mark:nope")),
    "purge": ((), "class-7", ()),
}


@pytest.mark.parametrize("command", LOCKING_COMMANDS)
@pytest.mark.parametrize("how", INTERRUPTIONS, ids=INTERRUPTIONS.keys())
def test_a_cancelled_or_killed_rewind_or_purge_exits_4_and_changes_nothing(
    seeded_db: Database, how: str, command: str
) -> None:
    db = seeded_db
    args, bad_tenant, bad_args = LOCKING_COMMANDS[command]
    tenant = rewindkit.tenants(db)[0]
    rewindkit.mark(db, tenant, "launch")
    db.sql("DELETE FROM public.patient_vitals WHERE tenant_id = %s", (tenant,))
    before = rewindkit.all_states(db)
    log = rewindkit.log_size(db)

    # A student's open transaction in that class: the command must wait for it.
    with psycopg.connect(db.dsn) as student:
        student.execute(
            "UPDATE public.patients SET room_number = 'X-1' WHERE tenant_id = %s", (tenant,)
        )
        process = cli_process(command, "--tenant", tenant, *args, dsn=db.dsn)
        try:
            pid = waiting_backend(db, f"simtrail {command}")
            assert db.sql(f"SELECT {how}(%s) AS done", (pid,))[0]["done"] is True
            out, err = process.communicate(timeout=60)
        finally:
            process.kill()
        student.rollback()

    assert process.returncode == 4, err
    assert out == ""
    line = assert_one_line_error(err)
    assert line.startswith(f"simtrail: error: {INTERRUPTIONS[how]}")
    assert line.endswith(
        "a transaction that had not committed is rolled back, so the command can be run again"
    )
    assert rewindkit.all_states(db) == before
    assert rewindkit.log_size(db) == log
    assert db.sql("SELECT count(*) AS n FROM simtrail.rewinds")[0]["n"] == 0

    # Bad input keeps exit 2; and the same command, run again, completes.
    bad = run_cli(command, "--tenant", bad_tenant or tenant, *bad_args, dsn=db.dsn)
    assert bad.exit_code == 2
    assert run_cli(command, "--tenant", tenant, *args, dsn=db.dsn).exit_code == 0


def test_help_documents_the_exit_codes() -> None:
    result = run_cli("--help")
    text = " ".join(result.stdout.split())
    assert "2 bad input (nothing written)" in text
    assert "4 interrupted: the server cancelled or ended the session" in text


def demo_database(server: Server) -> int | None:
    with server.admin() as conn:
        row = conn.execute("SELECT oid FROM pg_database WHERE datname = 'simtrail_demo'").fetchone()
    return int(row[0]) if row else None


def environment_naming(server: Server) -> dict[str, str]:
    params = conninfo_to_dict(server.admin_dsn)
    env = {"DATABASE_URL": server.admin_dsn, "SIMTRAIL_DSN": server.admin_dsn}
    for key, variable in (("host", "PGHOST"), ("port", "PGPORT"), ("user", "PGUSER")):
        if key in params:
            env[variable] = str(params[key])
    env["PGDATABASE"] = str(params.get("dbname", "postgres"))
    return env


def test_demo_without_dsn_ignores_the_servers_in_the_environment(
    server: Server, tmp_path: Path
) -> None:
    # The embedded server's data directory would have to go under a file, so
    # starting it fails at once: the demo's choice is visible without running it.
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    datadir = (blocker / "pg").resolve()
    existing = demo_database(server)
    result = run_cli("demo", "--data-dir", str(datadir), env=environment_naming(server))
    try:
        assert result.stdout.splitlines()[0] == (
            f"No --dsn given: starting an embedded PostgreSQL in {datadir}"
        )
        assert result.exit_code == 2
        line = assert_one_line_error(result.stderr)
        assert line.startswith(
            f"simtrail: error: cannot start the embedded PostgreSQL in {datadir}"
        )
        assert demo_database(server) == existing
    finally:
        if demo_database(server) != existing:
            with server.admin() as conn:
                conn.execute("DROP DATABASE simtrail_demo WITH (FORCE)")


@pytest.mark.parametrize("where", ["before demo", "after demo"])
def test_demo_uses_a_dsn_given_on_the_command_line(where: str) -> None:
    unreachable = "host=127.0.0.1 port=1 connect_timeout=2"
    args = (
        ("--dsn", unreachable, "demo") if where == "before demo" else ("demo", "--dsn", unreachable)
    )
    result = run_cli(*args)
    assert result.exit_code == 2
    assert "No --dsn given" not in result.stdout
    line = assert_one_line_error(result.stderr)
    assert line.startswith("simtrail: error: cannot connect to ")
    assert "port 1 failed" in line
