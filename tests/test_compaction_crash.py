"""Crash safety: kill -9 the compacting daemon 20 times, lose nothing, change nothing.

Each compaction batch is one transaction, so a kill at any point either
keeps a whole batch or none of it. Afterwards the log and the archive hold
every original change exactly once, and every rewind gives what it gave
before compaction started.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from tests import histories
from tests.conftest import Database
from tests.daemonkit import clean_env

KILLS = 20
ROUNDS = int(os.environ.get("SIMTRAIL_CRASH_ROUNDS", "120"))
# Moves make many targets refuse (rightly); this test wants results to compare.
SAFE_KINDS = [
    k
    for k in histories.OPERATIONS
    if k
    not in (
        "move_patient",
        "delete_user",
        "add_loose_patient",
        "assign_patient",
        "unassign_patient",
    )
]
ORIGINAL_COLUMNS = (
    "id, tenant_id, table_name, operation, row_pk, old_pk, old_data, new_data, xact_id::text, moved"
)

Outcome = tuple[str, Any]


def build_history(db: Database, rng: random.Random) -> None:
    """Rounds of charting (bulk edits plus random operations), each closed by a tick."""
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        tenants = [r[0] for r in conn.execute("SELECT id::text FROM public.tenants ORDER BY name")]
        for i in range(ROUNDS):
            for _ in range(8):
                ops = [
                    (rng.choice(SAFE_KINDS), rng.randrange(40), rng.randrange(40))
                    for _ in range(rng.randint(1, 3))
                ]
                histories.run_transaction(conn, ops, rng.random() < 0.9)
            # Volume: students re-chart the same rows again and again.
            for _ in range(5):
                conn.execute("UPDATE public.patients SET last_name = last_name || 'x'")
                conn.execute(
                    "UPDATE public.patient_vitals SET heart_rate = coalesce(heart_rate, 60) + 1"
                )
                conn.execute("UPDATE public.patient_notes SET content = content || '.'")
            if i % 7 == 3:
                conn.execute("SELECT simtrail.mark(%s, %s)", (rng.choice(tenants), f"r{i}"))
            conn.execute("SELECT simtrail.tick()")
            time.sleep(0.002)


def targets(db: Database) -> list[tuple[str, str]]:
    tenants = [str(r["id"]) for r in db.sql("SELECT id FROM public.tenants ORDER BY name")]
    marks = db.sql("SELECT tenant_id, name FROM simtrail.marks ORDER BY id")
    ticks = db.sql("SELECT at FROM simtrail.ticks ORDER BY id")
    found = [(m["tenant_id"], f"mark:{m['name']}") for m in marks]
    # Every sixth tick keeps the number of rewinds (and the test's time) modest.
    found += [(t, tick["at"].isoformat()) for tick in ticks[::6] for t in tenants]
    return found


def outcomes(db: Database, wanted: list[tuple[str, str]]) -> dict[tuple[str, str], Outcome]:
    """Each rewind's result, every tenant's state after it, rolled back afterwards."""
    found: dict[tuple[str, str], Outcome] = {}
    with psycopg.connect(db.dsn, autocommit=True, row_factory=dict_row) as conn:
        tenants = [str(r["id"]) for r in conn.execute("SELECT id FROM public.tenants")]
        for tenant, target in wanted:
            try:
                with conn.transaction(force_rollback=True):
                    conn.execute("SELECT simtrail.rewind(%s, %s, false)", (tenant, target))
                    states = {
                        t: sorted(
                            (r["table_name"], r["row_count"], r["checksum"])
                            for r in conn.execute("SELECT * FROM simtrail.tenant_state(%s)", (t,))
                        )
                        for t in tenants
                    }
                found[(tenant, target)] = ("state", states)
            except psycopg.Error as exc:
                found[(tenant, target)] = ("refused", exc.sqlstate)
    return found


def originals(db: Database) -> dict[int, tuple[Any, ...]]:
    rows = db.sql(f"SELECT {ORIGINAL_COLUMNS} FROM simtrail.changes WHERE net_from IS NULL")
    return {r["id"]: tuple(r.values()) for r in rows}


def compacted_below(db: Database) -> Any:
    return db.sql("SELECT compacted_below FROM simtrail.daemon_state")[0]["compacted_below"]


def caught_up(db: Database) -> bool:
    row = db.sql(
        "SELECT s.compacted_below >= (SELECT t.scan_from FROM simtrail.ticks AS t"
        " ORDER BY t.at DESC LIMIT 1) AS done FROM simtrail.daemon_state AS s"
    )
    return bool(row[0]["done"])


def test_kill_9_during_compaction_loses_and_changes_nothing(
    seeded_db: Database, tmp_path: Path
) -> None:
    db = seeded_db
    rng = random.Random(20261126)
    build_history(db, rng)
    before_originals = originals(db)
    assert len(before_originals) > 5000
    wanted = targets(db)
    before = outcomes(db, wanted)
    assert sum(1 for kind, _ in before.values() if kind == "state") > len(wanted) // 2

    command = [
        sys.executable,
        "-m",
        "simtrail.cli.main",
        "--dsn",
        db.dsn,
        "daemon",
        "--fine-window",
        "0",
        "--coarse-tick-interval",
        "1ms",
        "--batch-size",
        "5",
        "--tick-interval",
        "1h",
        "--poll-interval",
        "200ms",
    ]
    progress = []
    below = compacted_below(db)
    for kill in range(KILLS):
        with (tmp_path / f"run{kill}.log").open("wb") as log:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=clean_env(),
            )
        # Kill at a random moment once this run has committed a batch: a
        # fixed delay let a starved daemon (a loaded machine, a slow start)
        # be killed before it did anything, again and again.
        deadline = time.monotonic() + 60
        while compacted_below(db) == below and time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / f"run{kill}.log").read_text()
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.3))
        assert process.poll() is None, (tmp_path / f"run{kill}.log").read_text()
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        below = compacted_below(db)
        progress.append((below, caught_up(db)))
    # The kills landed while there was work to do, and work got done between them.
    assert sum(1 for _, done in progress if not done) >= KILLS - 2, progress
    assert len({below for below, _ in progress}) > KILLS // 2, progress

    for _ in range(200):
        if caught_up(db):
            break
        done = subprocess.run(
            [*command, "--once"],
            capture_output=True,
            env=clean_env(),
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode()
    assert caught_up(db)
    assert db.sql("SELECT count(*) AS n FROM simtrail.changes WHERE net_from IS NOT NULL")[0]["n"]

    # Exactly once: every original is either still in the log or archived, not both.
    log_ids = set(originals(db))
    archived = db.sql(f"SELECT {ORIGINAL_COLUMNS} FROM simtrail.archive ORDER BY id")
    archive_ids = [r["id"] for r in archived]
    assert len(archive_ids) == len(set(archive_ids))
    assert not log_ids & set(archive_ids)
    assert log_ids | set(archive_ids) == set(before_originals)
    for row in archived:
        assert tuple(row.values()) == before_originals[row["id"]]

    after = outcomes(db, wanted)
    assert after == before
