"""Time targets: exact to the tick, by commit timestamps, or refused naming the nearest cut."""

from __future__ import annotations

import json
import random
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from simtrail import embedded
from simtrail.clinic import seed
from simtrail.db import connect
from simtrail.triggers import installer
from tests import rewindkit
from tests.conftest import CliResult, Database, Server, run_cli
from tests.daemonkit import eventually, running
from tests.rewindkit import State, mark, state


def clock(db: Database) -> datetime:
    now: datetime = db.sql("SELECT clock_timestamp() AS t")[0]["t"]
    return now


def tick(db: Database, promise: str = "1 second") -> datetime:
    at: datetime = db.sql(
        "SELECT (simtrail.tick(%s::interval) ->> 'at')::timestamptz AS at", (promise,)
    )[0]["at"]
    return at


def patients(db: Database, tenant: str) -> list[str]:
    return [
        str(r["id"])
        for r in db.sql(
            "SELECT id FROM public.patients WHERE tenant_id = %s ORDER BY patient_id", (tenant,)
        )
    ]


def set_room(db: Database, patient: str, room: str) -> None:
    db.sql("UPDATE public.patients SET room_number = %s WHERE id = %s", (room, patient))


def written(db: Database) -> tuple[int, int, dict[str, State]]:
    """What a refused rewind must leave as it was."""
    rewinds = int(db.sql("SELECT count(*) AS n FROM simtrail.rewinds")[0]["n"])
    return rewindkit.log_size(db), rewinds, rewindkit.all_states(db)


def cli_rewind(db: Database, tenant: str, target: str, *extra: str) -> CliResult:
    return run_cli("rewind", "--tenant", tenant, "--to", target, "--json", *extra, dsn=db.dsn)


def report_of(result: CliResult) -> dict[str, Any]:
    assert result.exit_code == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def seconds_earlier(message: str) -> float:
    """The distance a refusal names, in seconds ("0.35 s earlier", "1 min 3 s earlier")."""
    found = re.search(r"\((?:(\d+) min )?(\d+(?:\.\d+)?) s earlier\)", message)
    assert found, message
    return int(found.group(1) or 0) * 60 + float(found.group(2))


def test_without_a_daemon_a_time_after_a_change_is_refused_and_nearest_says_how_far(
    seeded_db: Database,
) -> None:
    db = seeded_db
    tenant = rewindkit.tenants(db)[0]
    first, second = patients(db, tenant)[:2]
    mark(db, tenant, "t0")
    at_t0 = state(db, tenant)
    marked = db.sql("SELECT created_at FROM simtrail.marks WHERE name = 't0'")[0]["created_at"]
    time.sleep(0.2)
    set_room(db, first, "t1")
    time.sleep(0.05)
    between = clock(db)
    time.sleep(0.05)
    set_room(db, second, "t2")

    unchanged = written(db)
    refused = cli_rewind(db, tenant, between.isoformat())
    assert refused.exit_code == 2, refused.stderr
    line = refused.stderr.strip()
    assert "\n" not in line
    assert "the nearest earlier cut is mark t0 at" in line
    assert "--nearest" in line and "--to mark:t0" in line
    assert seconds_earlier(line) == pytest.approx((between - marked).total_seconds(), abs=0.002)
    assert written(db) == unchanged

    report = report_of(cli_rewind(db, tenant, between.isoformat(), "--nearest"))
    assert state(db, tenant) == at_t0
    assert report["precision"].startswith("not exact: nearest earlier cut, mark t0 at")
    assert "exact" not in report["precision"].replace("not exact", "")
    assert report["resolved"]["cut"] == "mark"


def test_a_time_after_a_quiet_spell_since_a_mark_is_exact(seeded_db: Database) -> None:
    db = seeded_db
    tenant = rewindkit.tenants(db)[0]
    mark(db, tenant, "t0")
    at_t0 = state(db, tenant)
    time.sleep(0.05)
    quiet = clock(db)
    time.sleep(0.05)
    set_room(db, patients(db, tenant)[0], "later")
    report = rewindkit.rewind(db, tenant, quiet.isoformat())
    assert state(db, tenant) == at_t0
    assert report["precision"].startswith(
        "exact: no change of this tenant between mark t0 at"
    )


def test_ticks_recorded_by_hand_make_a_time_between_them_exact_to_the_tick(
    seeded_db: Database,
) -> None:
    db = seeded_db
    tenant = rewindkit.tenants(db)[0]
    first, second = patients(db, tenant)[:2]
    ticked = tick(db)
    at_tick = state(db, tenant)
    set_room(db, first, "before the time, after the tick")
    time.sleep(0.02)
    between = clock(db)
    time.sleep(0.02)
    set_room(db, second, "after the time")
    tick(db)

    report = rewindkit.rewind(db, tenant, between.isoformat())
    # Exact to the tick: the state at the tick, which is at most the
    # promised spacing older than the time asked.
    assert state(db, tenant) == at_tick
    assert datetime.fromisoformat(report["resolved"]["cut_at"]) == ticked
    assert re.fullmatch(
        r"exact to the tick \(1 s\): state at tick at \S+, "
        r"0\.\d+ s before the time asked",
        report["precision"],
    ), report["precision"]


def test_with_the_daemon_running_then_stopped(seeded_db: Database, tmp_path: Path) -> None:
    db = seeded_db
    tenant = rewindkit.tenants(db)[0]
    first, second, third = patients(db, tenant)[:3]
    with running(db.dsn, tmp_path, "--tick-interval", "200ms", "--poll-interval", "200ms"):
        eventually(
            lambda: db.sql("SELECT count(*) AS n FROM simtrail.ticks")[0]["n"] >= 2,
            timeout=15,
            what="two ticks",
        )
        set_room(db, first, "while running")
        changed = clock(db)
        eventually(
            lambda: db.sql("SELECT 1 AS y FROM simtrail.ticks WHERE at > %s", (changed,)),
            timeout=10,
            what="a tick after the change",
        )
        after_first = state(db, tenant)
        running_time = clock(db)
        set_room(db, second, "after the time")
        changed = clock(db)
        eventually(
            lambda: db.sql("SELECT 1 AS y FROM simtrail.ticks WHERE at > %s", (changed,)),
            timeout=10,
            what="a tick after the second change",
        )
    promises = db.sql("SELECT DISTINCT promise FROM simtrail.ticks")
    # What the daemon promises: its interval plus room for a cycle's work.
    assert promises == [{"promise": timedelta(seconds=1.2)}]
    last_tick = db.sql("SELECT max(at) AS at FROM simtrail.ticks")[0]["at"]
    at_last_tick = state(db, tenant)

    # The daemon is down: a gap longer than its promise, with a change in it.
    time.sleep(0.3)
    set_room(db, third, "during the outage")
    time.sleep(1.2)
    in_gap = clock(db)
    time.sleep(0.05)
    set_room(db, first, "after the time in the gap")

    unchanged = written(db)
    refused = cli_rewind(db, tenant, in_gap.isoformat())
    assert refused.exit_code == 2, refused.stderr
    assert "no tick or mark within 1.2 s of" in refused.stderr
    assert "the nearest earlier cut is tick at" in refused.stderr
    assert seconds_earlier(refused.stderr) == pytest.approx(
        (in_gap - last_tick).total_seconds(), abs=0.002
    )
    assert written(db) == unchanged

    nearest = report_of(cli_rewind(db, tenant, in_gap.isoformat(), "--nearest"))
    assert state(db, tenant) == at_last_tick
    assert nearest["precision"].startswith("not exact: nearest earlier cut, tick at")

    report = report_of(cli_rewind(db, tenant, running_time.isoformat()))
    assert state(db, tenant) == after_first
    assert report["precision"].startswith("exact")
    cut_at = datetime.fromisoformat(report["resolved"]["cut_at"])
    assert cut_at <= running_time and running_time - cut_at <= timedelta(seconds=1.2)


def test_the_cut_a_refusal_names_can_be_asked_for_as_a_time(seeded_db: Database) -> None:
    db = seeded_db
    tenant = rewindkit.tenants(db)[0]
    first, second = patients(db, tenant)[:2]
    tick(db, "100 milliseconds")
    at_tick = state(db, tenant)
    time.sleep(0.15)
    set_room(db, first, "in the gap")
    later = clock(db)
    set_room(db, second, "after")
    refused = cli_rewind(db, tenant, later.isoformat())
    assert refused.exit_code == 2
    message = json.loads(refused.stderr)["error"]["message"]
    suggested = re.search(r"or --to (\S+)$", message)
    assert suggested, refused.stderr
    report = report_of(cli_rewind(db, tenant, suggested.group(1)))
    assert state(db, tenant) == at_tick
    assert report["precision"].startswith("exact")


def straddle(db: Database, tenant: str) -> tuple[State, datetime, State]:
    """X begins before T and commits after it; Y begins after T and commits before X.

    Returns the state before both, T, and {X without Y}: what transaction start
    times give, a state nobody saw.
    """
    first, second = patients(db, tenant)[:2]
    room = db.sql("SELECT room_number FROM public.patients WHERE id = %s", (second,))[0]
    before = state(db, tenant)
    with psycopg.connect(db.dsn) as x:
        x.execute("UPDATE public.patients SET room_number = 'X' WHERE id = %s", (first,))
        time.sleep(0.02)
        target = clock(db)
        time.sleep(0.02)
        with psycopg.connect(db.dsn) as y:
            y.execute("UPDATE public.patients SET room_number = 'Y' WHERE id = %s", (second,))
            y.commit()
        time.sleep(0.01)
        x.commit()
    # Measured by putting Y's row back for a moment (more changes after T).
    set_room(db, second, room["room_number"])
    x_only = state(db, tenant)
    set_room(db, second, "Y")
    return before, target, x_only


def test_transactions_straddling_the_time_are_refused_not_half_undone(
    seeded_db: Database,
) -> None:
    db = seeded_db
    tenant = rewindkit.tenants(db)[0]
    before, target, x_only = straddle(db, tenant)
    assert x_only != before
    unchanged = written(db)
    refused = cli_rewind(db, tenant, target.isoformat())
    # Start times would give {X without Y}; there is no cut to place the time.
    assert refused.exit_code == 2, refused.stdout
    assert "no tick or mark at or before" in refused.stderr
    assert written(db) == unchanged
    assert state(db, tenant) != x_only


def test_transactions_straddling_the_time_after_a_tick_resolve_to_the_tick(
    seeded_db: Database,
) -> None:
    db = seeded_db
    tenant = rewindkit.tenants(db)[0]
    tick(db)
    before, target, _ = straddle(db, tenant)
    report = rewindkit.rewind(db, tenant, target.isoformat())
    assert state(db, tenant) == before
    assert report["precision"].startswith("exact to the tick")


def test_compacted_history_uses_the_hourly_tick_and_says_so(seeded_db: Database) -> None:
    db = seeded_db
    tenant = rewindkit.tenants(db)[0]
    first, second, third = patients(db, tenant)[:3]
    # Thinning keeps the first tick of each clock hour: stay inside one.
    if db.sql("SELECT extract(epoch FROM date_bin('1 hour', now(), 'epoch') + interval"
              " '1 hour' - now()) AS left")[0]["left"] < 10:
        time.sleep(11)
    hourly = tick(db, "100 milliseconds")
    at_hourly = state(db, tenant)
    time.sleep(0.2)
    set_room(db, first, "a")
    fine = tick(db, "10 seconds")
    at_fine = state(db, tenant)
    set_room(db, second, "b")
    time.sleep(0.05)
    target = clock(db)
    time.sleep(0.05)
    set_room(db, third, "c")
    # Folds with "a" once the fine tick between them is thinned away.
    set_room(db, first, "a again")
    tick(db)

    # Before thinning: the fine tick, exact to the tick.
    dry = rewindkit.rewind(db, tenant, target.isoformat(), dry_run=True)
    assert datetime.fromisoformat(dry["resolved"]["cut_at"]) == fine
    assert dry["precision"].startswith("exact to the tick")

    time.sleep(0.05)
    thinned = db.sql("SELECT simtrail.thin_ticks('10 milliseconds', '1 hour') AS n")[0]["n"]
    assert thinned == 2
    # The frontier up to which compaction runs.
    tick(db)
    while not db.sql("SELECT simtrail.compact_batch('0', 10000) AS b")[0]["b"]["done"]:
        pass
    assert db.sql("SELECT count(*) AS n FROM simtrail.changes WHERE net_from IS NOT NULL")[0]["n"]

    report = rewindkit.rewind(db, tenant, target.isoformat())
    assert state(db, tenant) == at_hourly != at_fine
    assert datetime.fromisoformat(report["resolved"]["cut_at"]) == hourly
    assert re.fullmatch(
        r"hourly tick in compacted history: state at \S+, 0\.\d+ s before the time asked",
        report["precision"],
    ), report["precision"]


# Commit timestamps need track_commit_timestamp, which only a restart turns on:
# a server of this test's own, never the shared ones.


@pytest.fixture(scope="module")
def commit_ts_server() -> Iterator[Server]:
    datadir = Path(tempfile.mkdtemp(prefix="simtrail-cts-"))
    try:
        with ExitStack() as first:
            dsn = embedded.start(datadir, first)
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("ALTER SYSTEM SET track_commit_timestamp = on")
        with ExitStack() as stack:
            dsn = embedded.start(datadir, stack)
            with psycopg.connect(dsn, autocommit=True) as conn:
                row = conn.execute("SHOW track_commit_timestamp").fetchone()
                version = conn.info.server_version
            assert row is not None and row[0] == "on"
            yield Server("embedded-commit-ts", dsn, version)
    finally:
        shutil.rmtree(datadir, ignore_errors=True)


@pytest.fixture
def commit_ts_db(commit_ts_server: Server) -> Iterator[Database]:
    name = f"simtrail_cts_{time.monotonic_ns()}"
    with commit_ts_server.admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    db = Database(commit_ts_server, name, commit_ts_server.dsn_for(name))
    try:
        with psycopg.connect(db.dsn, autocommit=True) as conn:
            seed.apply_schema(conn)
        with connect(db.dsn, "test setup") as conn:
            installer.install(conn)
        with psycopg.connect(db.dsn, autocommit=True) as conn:
            seed.seed_tenants(conn, tenants=2, patients_per_tenant=3, rng=random.Random(7))
        yield db
    finally:
        db.close()
        with commit_ts_server.admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def test_commit_timestamps_resolve_a_time_no_cut_places(commit_ts_db: Database) -> None:
    db = commit_ts_db
    tenant = rewindkit.tenants(db)[0]
    first, second = patients(db, tenant)[:2]
    set_room(db, first, "committed before")
    after_first = state(db, tenant)
    time.sleep(0.02)
    target = clock(db)
    time.sleep(0.02)
    set_room(db, second, "committed after")
    report = report_of(cli_rewind(db, tenant, target.isoformat()))
    assert state(db, tenant) == after_first
    assert report["precision"].startswith("commit timestamps:")
    assert "exact" not in report["precision"]


def test_commit_timestamps_undo_both_straddling_transactions(commit_ts_db: Database) -> None:
    db = commit_ts_db
    tenant = rewindkit.tenants(db)[0]
    before, target, x_only = straddle(db, tenant)
    report = rewindkit.rewind(db, tenant, target.isoformat())
    assert state(db, tenant) == before != x_only
    assert report["resolved"]["resolved_by"] == "commit timestamps"


def test_no_temp_table_is_left_in_time_resolution(installed_db: Database) -> None:
    bodies = installed_db.sql(
        "SELECT proname, prosrc FROM pg_proc WHERE pronamespace = 'simtrail'::regnamespace"
        " AND proname IN ('resolve_target', 'resolve_time', 'parse_time', 'tick')"
    )
    assert len(bodies) == 5
    for body in bodies:
        assert "pg_temp" not in body["prosrc"] and "TEMP" not in body["prosrc"].upper(), body[
            "proname"
        ]
