"""One bad config row must not stop healing (issue 8, item 10).

A row for a table without a primary key (or a missing table) is refused on
its own: install and the daemon still attach every valid table, install exits
1 and names the row, doctor and /healthz report it, and `daemon --once` exits
non-zero. The real CLI and the real daemon run in subprocesses.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Database, run_cli
from tests.daemonkit import eventually, running

FAST = ("--tick-interval", "200ms", "--poll-interval", "200ms", "--heal-interval", "1s")
NO_PK = "public.pain_log has no primary key, so its rows cannot be identified"


def add_bad_and_new_rows(db: Database) -> None:
    """A typo'd row (no primary key) next to a new, valid feature table."""
    db.sql("CREATE TABLE public.pain_log (tenant_id uuid, score integer)")
    db.sql(
        "CREATE TABLE public.fluid_balance (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
        " tenant_id uuid NOT NULL, intake_ml integer)"
    )
    db.sql(
        "INSERT INTO public.simulation_table_config (table_name, category, has_tenant_id)"
        " VALUES ('pain_log', 'clinical', true), ('fluid_balance', 'clinical', true)"
    )


def triggers(db: Database, table: str) -> list[str]:
    rows = db.sql(
        "SELECT tgname::text AS name FROM pg_trigger WHERE tgrelid = %s::regclass"
        " AND tgname LIKE 'simtrail\\_capture\\_%%' ORDER BY 1",
        (table,),
    )
    return [r["name"] for r in rows]


ALL_FOUR = [
    "simtrail_capture_delete",
    "simtrail_capture_insert",
    "simtrail_capture_truncate",
    "simtrail_capture_update",
]


def assert_new_table_captured(db: Database) -> None:
    assert triggers(db, "public.fluid_balance") == ALL_FOUR
    assert triggers(db, "public.pain_log") == []
    tenant = "8b0c5d6e-0000-4000-8000-000000000001"
    db.sql("INSERT INTO public.fluid_balance (tenant_id, intake_ml) VALUES (%s, 250)", (tenant,))
    logged = db.sql(
        "SELECT tenant_id, operation FROM simtrail.changes"
        " WHERE table_name = 'public.fluid_balance'"
    )
    assert logged == [{"tenant_id": tenant, "operation": "INSERT"}]


def test_install_attaches_the_valid_table_and_exits_one(installed_db: Database) -> None:
    db = installed_db
    add_bad_and_new_rows(db)
    result = run_cli("install", dsn=db.dsn)
    assert result.exit_code == 1
    assert result.stdout.splitlines() == ["attach public.fluid_balance: no capture trigger yet"]
    assert result.stderr.splitlines() == [
        f"simtrail: error: simulation_table_config row pain_log: {NO_PK}"
    ]
    assert_new_table_captured(db)

    as_json = run_cli("install", "--json", dsn=db.dsn)
    assert as_json.exit_code == 1
    report = json.loads(as_json.stdout)
    assert report["actions"] == []
    assert report["refused"] == [{"table_name": "pain_log", "problem": NO_PK}]

    doctor = run_cli("doctor", "--json", dsn=db.dsn)
    assert doctor.exit_code == 1
    assert json.loads(doctor.stdout)["findings"] == [
        {
            "severity": "error",
            "kind": "config",
            "table_name": "pain_log",
            "detail": NO_PK,
            "fix": "correct the row of pain_log in public.simulation_table_config"
            " (UPDATE or DELETE it in SQL), or `simtrail config disable pain_log`",
        }
    ]


def test_a_bad_row_keeps_the_triggers_its_table_had(installed_db: Database) -> None:
    # A row that breaks after capture began is left as it is, not detached:
    # detaching would open a hole in that table's history over a typo.
    db = installed_db
    before = triggers(db, "public.lab_results")
    hash_before = db.sql(
        "SELECT trigger_hash FROM simtrail.captured_tables WHERE table_name = 'public.lab_results'"
    )
    db.sql(
        "UPDATE public.simulation_table_config SET parent_table = 'lab_panel'"
        " WHERE table_name = 'lab_results'"
    )
    result = run_cli("install", dsn=db.dsn)
    assert result.exit_code == 1
    assert "row lab_results: parent table lab_panel" in result.stderr
    assert triggers(db, "public.lab_results") == before == ALL_FOUR
    assert (
        db.sql(
            "SELECT trigger_hash FROM simtrail.captured_tables"
            " WHERE table_name = 'public.lab_results'"
        )
        == hash_before
    )


def test_daemon_once_heals_the_rest_and_exits_non_zero(installed_db: Database) -> None:
    db = installed_db
    add_bad_and_new_rows(db)
    done = run_cli("daemon", "--once", dsn=db.dsn)
    assert done.exit_code == 1
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    refused = [e for e in events if e["event"].startswith("config row refused")]
    assert [(e["table"], e["problem"]) for e in refused] == [("pain_log", NO_PK)]
    healed = [e for e in events if e["event"] == "trigger healed"]
    assert [(e["action"], e["table"]) for e in healed] == [("attach", "public.fluid_balance")]
    cycle = [e for e in events if e["event"] == "cycle"]
    assert len(cycle) == 1 and cycle[0]["config_problems"] == 1
    # The cycle did its other work too.
    assert db.sql("SELECT count(*) AS n FROM simtrail.ticks")[0]["n"] == 1
    assert_new_table_captured(db)

    # Fixed, the next --once is clean.
    db.sql("DELETE FROM public.simulation_table_config WHERE table_name = 'pain_log'")
    again = run_cli("daemon", "--once", dsn=db.dsn)
    assert again.exit_code == 0, again.stderr


def test_healthz_reports_the_refused_row(installed_db: Database, tmp_path: Path) -> None:
    db = installed_db
    with running(db.dsn, tmp_path, *FAST) as daemon:
        eventually(lambda: daemon.role() == "leader", timeout=10, what="leader")
        code, body = daemon.health()
        assert (code, body["status"], body["config_problems"]) == (200, "ok", [])

        add_bad_and_new_rows(db)
        code, body = eventually(
            lambda: (lambda h: h if h[1]["config_problems"] else None)(daemon.health()),
            timeout=10,
            what="/healthz names the bad row",
        )
        assert code == 200
        assert body["status"] == "degraded"
        assert body["config_problems"] == [{"table_name": "pain_log", "problem": NO_PK}]
        assert daemon.metrics()["simtrail_config_problems"] == 1
        # The valid table was attached by the same heal.
        eventually(
            lambda: triggers(db, "public.fluid_balance") == ALL_FOUR, timeout=10, what="attach"
        )

        db.sql("DELETE FROM public.simulation_table_config WHERE table_name = 'pain_log'")
        eventually(
            lambda: daemon.health()[1]["config_problems"] == [], timeout=10, what="problem gone"
        )
        assert daemon.health()[1]["status"] == "ok"
        assert daemon.metrics()["simtrail_config_problems"] == 0
    assert_new_table_captured(db)


def test_a_refused_row_is_logged_once_not_every_heal(
    installed_db: Database, tmp_path: Path
) -> None:
    db = installed_db
    add_bad_and_new_rows(db)
    with running(db.dsn, tmp_path, *FAST) as daemon:
        eventually(lambda: len(daemon.events("cycle")) >= 15, timeout=20, what="fifteen cycles")
        refused = [e for e in daemon.logs() if e["event"].startswith("config row refused")]
        assert [e["table"] for e in refused] == ["pain_log"]
        db.sql("DELETE FROM public.simulation_table_config WHERE table_name = 'pain_log'")
        eventually(lambda: daemon.events("config problems resolved"), timeout=10, what="resolved")
