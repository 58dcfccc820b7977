"""The daemon's own VACUUM of the log: it runs after compaction, and a stop cancels it."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psycopg

from simtrail.daemon.upkeep import log_pages, upkeep_log
from simtrail.db import connect
from tests.conftest import Database
from tests.daemonkit import eventually, running

COMPACT_NOW = (
    "--tick-interval", "200ms", "--poll-interval", "200ms", "--heal-interval", "1s",
    "--fine-window", "0", "--coarse-tick-interval", "1ms",
)


def churn(db: Database, rounds: int, *, tick_every: int = 1) -> int:
    """Each round rewrites every patient, a tick every few rounds; the log's rows.

    Compaction folds a row's changes between two cut points (ticks).
    """
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        for done in range(1, rounds + 1):
            conn.execute("UPDATE public.patients SET first_name = first_name || 'x'")
            if done % tick_every == 0 or done == rounds:
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


def compact_everything(db: Database) -> None:
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        conn.execute("SELECT simtrail.thin_ticks('0', '1 microsecond')")
        while True:
            with conn.transaction():
                row = conn.execute("SELECT simtrail.compact_batch('0', 5000)").fetchone()
            if row and row[0]["done"]:
                return


def log_digest(db: Database) -> dict[str, object]:
    return db.sql(
        "SELECT count(*) AS n, md5(string_agg(c::text, ',' ORDER BY c.id)) AS digest,"
        " (SELECT array_agg(i.indexrelid::regclass::text ORDER BY 1) FROM pg_index AS i"
        "   WHERE i.indrelid = 'simtrail.changes'::regclass AND i.indisvalid) AS indexes"
        " FROM simtrail.changes AS c"
    )[0]


def test_upkeep_packs_the_log_and_keeps_every_row_as_it_was(seeded_db: Database) -> None:
    churn(seeded_db, 80, tick_every=20)
    compact_everything(seeded_db)
    before = log_digest(seeded_db)
    with connect(seeded_db.dsn, "test upkeep", statement_timeout_ms=0) as conn:
        pages, packed = log_pages(conn)
        assert pages > 2 * packed  # compaction left most of the table empty
        outcome = upkeep_log(conn)
        after_pages, _ = log_pages(conn)
    assert outcome.result == "done" and outcome.error is None
    assert outcome.rows_moved > 0
    assert outcome.pages_before == pages and outcome.pages_after == after_pages
    assert after_pages <= packed * 1.3 + 16, (after_pages, packed)
    assert outcome.reindexed
    assert outcome.bytes_after < outcome.bytes_before / 2
    # The same rows, ids and columns, and the same (valid) indexes.
    assert log_digest(seeded_db) == before
