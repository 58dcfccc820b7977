"""`simtrail status --json`: the installed version, the covered tables and
per-table change counts that agree with the log itself."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from datetime import datetime
from typing import Any

import psycopg

from simtrail import __version__
from simtrail.triggers.installer import latest_version
from tests.catalog import FIXTURE_TABLES, invoke
from tests.conftest import Database, run_cli


def status_json(db: Database) -> dict[str, Any]:
    result = invoke(db.dsn, "status", "--json")
    assert result.exit_code == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def log_counts(db: Database) -> dict[str, dict[str, Any]]:
    rows = db.sql(
        "SELECT table_name, count(*) AS changes, min(changed_at) AS oldest,"
        " max(changed_at) AS newest FROM simtrail.changes GROUP BY table_name"
    )
    return {r["table_name"]: r for r in rows}


def assert_agrees_with_log(db: Database, report: dict[str, Any]) -> None:
    counts = log_counts(db)
    by_table = {t["table_name"]: t for t in report["tables"]}
    assert len(by_table) == len(report["tables"])
    # Every table with history is listed; every listed table's count is the log's.
    assert set(counts) <= set(by_table)
    for name, t in by_table.items():
        log = counts.get(name)
        assert t["changes"] == (log["changes"] if log else 0), name
        if log:
            assert datetime.fromisoformat(t["oldest"]) == log["oldest"]
            assert datetime.fromisoformat(t["newest"]) == log["newest"]
        else:
            assert t["oldest"] is None and t["newest"] is None
    total = db.sql("SELECT count(*) AS n FROM simtrail.changes")[0]["n"]
    assert report["total_changes"] == total
    assert (
        report["changes_without_tenant"]
        == db.sql("SELECT count(*) AS n FROM simtrail.changes WHERE tenant_id IS NULL")[0]["n"]
    )
    if total:
        span = db.sql("SELECT min(changed_at) AS lo, max(changed_at) AS hi FROM simtrail.changes")
        assert datetime.fromisoformat(report["oldest_change"]) == span[0]["lo"]
        assert datetime.fromisoformat(report["newest_change"]) == span[0]["hi"]


def captured(db: Database) -> set[str]:
    return {r["table_name"] for r in db.sql("SELECT table_name FROM simtrail.captured_tables")}


def test_status_on_a_fresh_install(installed_db: Database) -> None:
    report = status_json(installed_db)
    assert report["installed"] is True
    assert report["package_version"] == __version__
    assert report["schema_version"] == latest_version()
    assert {t["table_name"] for t in report["tables"]} == captured(installed_db)
    assert len(report["tables"]) == len(FIXTURE_TABLES)
    assert all(t["changes"] == 0 for t in report["tables"])
    assert report["total_changes"] == 0
    assert report["oldest_change"] is None and report["newest_change"] is None
    paths = {t["table_name"]: t["reaches_tenant"] for t in report["tables"]}
    assert paths["public.patients"] == "own tenant_id"
    assert paths["public.lab_results"].startswith("panel_id → public.lab_panels")
    assert paths["public.wound_assessments"].startswith(
        "wound_id → public.patient_wounds → patient_id → public.patients"
    )


def test_status_counts_match_the_log(seeded_db: Database) -> None:
    # More history on top of the seed: an update, and a cascade through a parent.
    seeded_db.sql("UPDATE public.patient_vitals SET pain_score = 2")
    seeded_db.sql(
        "DELETE FROM public.patients WHERE id IN"
        " (SELECT patient_id FROM public.patient_wounds ORDER BY id LIMIT 1)"
    )
    report = status_json(seeded_db)
    assert report["schema_version"] == latest_version()
    assert {t["table_name"] for t in report["tables"]} == captured(seeded_db)
    assert report["total_changes"] > 0
    assert sum(t["changes"] for t in report["tables"]) == report["total_changes"]
    assert_agrees_with_log(seeded_db, report)
    counts = log_counts(seeded_db)
    assert counts["public.wound_assessments"]["changes"] > 0


def test_status_keeps_history_of_a_disabled_table(seeded_db: Database) -> None:
    before = log_counts(seeded_db)["public.bowel_records"]["changes"]
    assert invoke(seeded_db.dsn, "config", "disable", "bowel_records").exit_code == 0

    report = status_json(seeded_db)
    by_table = {t["table_name"]: t for t in report["tables"]}
    assert by_table["public.bowel_records"]["reaches_tenant"] == "(no longer captured)"
    assert by_table["public.bowel_records"]["changes"] == before
    assert "public.bowel_records" not in captured(seeded_db)
    assert set(by_table) == captured(seeded_db) | {"public.bowel_records"}
    assert_agrees_with_log(seeded_db, report)


def test_status_for_people(seeded_db: Database) -> None:
    report = status_json(seeded_db)
    result = run_cli("status", dsn=seeded_db.dsn)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == f"simtrail {__version__}, schema version {latest_version()}"
    assert lines[-2].startswith(f"{report['total_changes']} changes in the log, from ")
    assert lines[-1] == (
        "daemon: no leader running, last tick -; 0 net changes in the log,"
        " 0 originals archived in 0 partitions"
    )
    row = next(line for line in lines if line.startswith("public.patients "))
    patients = next(t for t in report["tables"] if t["table_name"] == "public.patients")
    assert str(patients["changes"]) in row.split()


def test_status_when_not_installed(clinic_db: Database) -> None:
    report = status_json(clinic_db)
    assert report.pop("connection")["database"] == clinic_db.name
    assert report == {"installed": False, "package_version": __version__}
    result = invoke(clinic_db.dsn, "status")
    assert result.exit_code == 0
    assert result.stdout.strip() == "simtrail is not installed in this database"


def in_a_terminal(*args: str, dsn: str) -> tuple[int, str, str]:
    """The real CLI with its stderr on a pseudo-terminal, as a person runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "DATABASE_URL"))}
    leader, follower = pty.openpty()
    done = subprocess.Popen(
        [sys.executable, "-m", "simtrail.cli.main", "--dsn", dsn, *args],
        stdout=subprocess.PIPE,
        stderr=follower,
        text=True,
        env=env,
    )
    os.close(follower)
    out, _ = done.communicate(timeout=120)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the other side is closed and everything was read
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return done.returncode, out, b"".join(chunks).decode().replace("\r\n", "\n")


def expected_target(db: Database) -> dict[str, Any]:
    with psycopg.connect(db.dsn) as conn:
        info = conn.info
        return {"database": db.name, "host": info.host, "port": info.port, "user": info.user,
                "server_version": info.server_version}


def expected_banner(target: dict[str, Any]) -> str:
    if target["host"].startswith("/"):
        return (f"simtrail: database {target['database']} via socket {target['host']}"
                f" port {target['port']} as {target['user']}")
    return (f"simtrail: database {target['database']} on {target['host']}:{target['port']}"
            f" as {target['user']}")


def test_status_and_writers_name_their_database_in_a_terminal(seeded_db: Database) -> None:
    db = seeded_db
    target = expected_target(db)
    with_password = f"{db.dsn} password=hunter2"
    tenant = db.sql("SELECT id::text FROM public.tenants ORDER BY name LIMIT 1")[0]["id"]

    code, out, err = in_a_terminal("status", dsn=with_password)
    assert code == 0
    assert err.splitlines() == [expected_banner(target)]
    assert "hunter2" not in err + out
    assert out.splitlines()[0].startswith("simtrail ")  # stdout is the report, as before

    code, _, err = in_a_terminal("mark", "create", "--tenant", tenant, "launch", dsn=db.dsn)
    assert code == 0 and err.splitlines() == [expected_banner(target)]
    # Also when it then fails: the name first, then the one error line.
    code, _, err = in_a_terminal("mark", "create", "--tenant", tenant, "launch", dsn=db.dsn)
    assert code == 2
    assert err.splitlines()[0] == expected_banner(target)
    assert err.splitlines()[1].startswith("simtrail: error: ")
    # A command that only reads does not.
    code, _, err = in_a_terminal("mark", "list", "--tenant", tenant, dsn=db.dsn)
    assert code == 0 and err == ""


def test_scripts_get_the_database_in_a_field(seeded_db: Database) -> None:
    db = seeded_db
    target = expected_target(db)
    code, out, err = in_a_terminal("status", "--json", dsn=f"{db.dsn} password=hunter2")
    assert code == 0 and err == ""
    assert json.loads(out)["connection"] == target
    assert "hunter2" not in out
    # In a pipe, nothing extra on stderr (an error there stays one line).
    piped = run_cli("status", dsn=db.dsn)
    assert piped.exit_code == 0 and piped.stderr == ""
    tenant = db.sql("SELECT id::text FROM public.tenants ORDER BY name LIMIT 1")[0]["id"]
    marked = run_cli("mark", "create", "--tenant", tenant, "m1", "--json", dsn=db.dsn)
    assert json.loads(marked.stdout)["connection"] == target
