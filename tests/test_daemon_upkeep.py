"""The daemon's own VACUUM of the log: it runs after compaction, and a stop cancels it."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psycopg

from tests.conftest import Database
from tests.daemonkit import eventually, running

COMPACT_NOW = (
    "--tick-interval", "200ms", "--poll-interval", "200ms", "--heal-interval", "1s",
    "--fine-window", "0", "--coarse-tick-interval", "1ms",
)


def churn(db: Database, rounds: int) -> int:
    """Changes that compaction folds (each round rewrites every patient); the log's rows."""
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        for _ in range(rounds):
            conn.execute("UPDATE public.patients SET first_name = first_name || 'x'")
            conn.execute("SELECT simtrail.tick()")
    return int(db.sql("SELECT count(*) AS n FROM simtrail.changes")[0]["n"])


def vacuum_backends(db: Database) -> list[dict[str, object]]:
    return db.sql(
        "SELECT pid, wait_event_type FROM pg_stat_activity"
        " WHERE datname = current_database() AND application_name = 'simtrail vacuum'"
    )


def test_the_log_is_vacuumed_after_compaction(seeded_db: Database, tmp_path: Path) -> None:
    churn(seeded_db, 10)
    with running(seeded_db.dsn, tmp_path, *COMPACT_NOW, "--vacuum-interval", "1s") as daemon:
        done = eventually(
            lambda: [e for e in daemon.events("log vacuum") if e["result"] == "done"],
            timeout=30, what="a finished VACUUM of the log",
        )
        line = done[0]
        assert line["rows_removed"] > 0
        assert line["log_bytes_before"] > 0 and line["log_bytes_after"] > 0
        assert line["log_bytes_returned"] == max(
            0, line["log_bytes_before"] - line["log_bytes_after"]
        )
        metrics = daemon.metrics()
        assert metrics['simtrail_vacuums_total{result="done"}'] >= 1
        assert metrics['simtrail_vacuums_total{result="cancelled"}'] == 0
        assert metrics["simtrail_vacuum_seconds_total"] > 0
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=10) == 0
    stats = seeded_db.sql(
        "SELECT last_vacuum IS NOT NULL AS vacuumed FROM pg_stat_user_tables"
        " WHERE relid = 'simtrail.changes'::regclass"
    )
    assert stats == [{"vacuumed": True}]


def test_off_runs_no_vacuum(seeded_db: Database, tmp_path: Path) -> None:
    churn(seeded_db, 5)
    with running(seeded_db.dsn, tmp_path, *COMPACT_NOW, "--vacuum-interval", "off") as daemon:
        eventually(
            lambda: [e for e in daemon.events("cycle") if e.get("compaction_archived", 0) > 0],
            timeout=20, what="a cycle that archived changes",
        )
        time.sleep(1.0)
        assert daemon.events("log vacuum") == []
        assert daemon.metrics()["simtrail_vacuum_running"] == 0
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=10) == 0


def test_sigterm_cancels_a_blocked_vacuum_and_exits_within_ten_seconds(
    seeded_db: Database, tmp_path: Path
) -> None:
    churn(seeded_db, 10)
    # A lock VACUUM waits for (writers do not): the daemon's VACUUM hangs on it.
    with psycopg.connect(seeded_db.dsn) as blocker:
        blocker.execute("LOCK TABLE simtrail.changes IN SHARE UPDATE EXCLUSIVE MODE")
        with running(seeded_db.dsn, tmp_path, *COMPACT_NOW, "--vacuum-interval", "1s") as daemon:
            eventually(
                lambda: [b for b in vacuum_backends(seeded_db) if b["wait_event_type"] == "Lock"],
                timeout=30, what="the daemon's VACUUM waiting on the lock",
            )
            assert daemon.metrics()["simtrail_vacuum_running"] == 1
            time.sleep(0.5)
            sent = time.monotonic()
            daemon.signal(signal.SIGTERM)
            exit_code = daemon.wait(timeout=15)
            elapsed = time.monotonic() - sent
            assert exit_code == 0
            assert elapsed < 10, elapsed
            lines = daemon.events("log vacuum")
            assert [line["result"] for line in lines] == ["cancelled"]
            assert daemon.events("daemon stopped")[-1]["signal"] == "SIGTERM"
        blocker.rollback()
    # Its backend is gone with it, not left waiting on the lock.
    eventually(lambda: not vacuum_backends(seeded_db), timeout=5, what="no VACUUM backend left")
