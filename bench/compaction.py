"""Compaction: throughput, log size, and rewinds before and after.

One scratch database holds the clinic schema with simtrail installed. Classes
chart for "hours" until the log holds the planned number of captured changes:
each hour every class re-charts its own set of hot vitals round after round
(students come back to the same patients), amends notes and charts new
vitals, and now and then discharges a patient (a cascade through every child
table). A tick closes each hour, standing in for the daemon's hourly tick.
Every class has a `launch` mark at the start and two `break` marks later.

The workload runs server-side (bench/sql/compaction_workload.sql): procedures
that COMMIT after each statement, so the history holds tens of thousands of
captured transactions, as an application's would, without a round trip each.

Measured:

- a rewind of one class to a recent mark (a short session, few rows), after
  a quarter of the history and again at its end: what the same rewind costs
  in a longer history;
- that recent rewind and one to the class's `launch` mark (every row the
  class touched), before compaction and after it;
- compaction itself: every batch of ``compact_batch`` timed, and the log's
  rows and bytes before and after.

Rewinds run in transactions that are rolled back, so every repeat starts from
the same state.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from bench import machine
from bench.cpu import CpuMeter
from bench.sql import query, script
from simtrail.clinic import seed
from simtrail.daemon.upkeep import upkeep_log
from simtrail.db import Conn, connect
from simtrail.triggers import installer

Say = Callable[[str], None]
SEED = 2026


def q(name: str) -> sql.SQL:
    return query("compaction.sql", name)


@dataclass(frozen=True)
class Plan:
    changes: int  # captured changes in the history, about
    tenants: int
    patients_per_tenant: int
    vitals_per_patient: int  # charted before launch
    hot_rows: int  # vitals per class re-charted in one hour
    rounds: int  # times each hot row is charted in one hour
    rows_per_xact: int  # hot rows one transaction saves
    probe_at: int  # history length of the first recent rewind
    batch: int  # compact_batch size
    repeats: int
    discharge_every: int = 6  # hours between discharges (one patient per class)


# 1M changes: ~24 hours of ~42,000 changes (20 classes x 200 hot rows x 10
# rounds, plus notes and new vitals), so a tick every ~40,000 changes.
FULL = Plan(
    changes=1_000_000,
    tenants=20,
    patients_per_tenant=20,
    vitals_per_patient=50,
    hot_rows=200,
    rounds=10,
    rows_per_xact=20,
    probe_at=250_000,
    batch=50_000,
    repeats=5,
)
QUICK = Plan(
    changes=100_000,
    tenants=20,
    patients_per_tenant=5,
    vitals_per_patient=40,
    hot_rows=50,
    rounds=10,
    rows_per_xact=10,
    probe_at=25_000,
    batch=20_000,
    repeats=1,
)


@dataclass
class Rewind:
    label: str
    target: str
    history: int  # log rows when measured
    changes_undone: int = 0
    rows_touched: int = 0
    digest: str = ""
    seconds: list[float] = field(default_factory=list)
    # On-CPU seconds of the backend per repeat (empty when the server is not
    # on this host): a neighbour's load stretches wall-clock time, not these.
    cpu_seconds: list[float] = field(default_factory=list)


@dataclass
class Batch:
    scanned: int
    archived: int
    net: int
    seconds: float


@dataclass
class Results:
    plan: Plan
    tenant: str = ""  # the class whose rewinds are timed
    history: dict[str, int] = field(default_factory=dict)
    hours: int = 0
    generate_seconds: float = 0.0
    before: dict[str, Any] = field(default_factory=dict)  # daemon_stats
    after: dict[str, Any] = field(default_factory=dict)  # right after compaction
    after_vacuum_bytes: int = 0  # after the daemon's upkeep (daemon/upkeep.py)
    upkeep: dict[str, Any] = field(default_factory=dict)  # its log line's fields
    after_full_bytes: int = 0
    thinned: int = 0
    # Sealed before compaction is timed, as the daemon's every-cycle seal
    # would have long done for history old enough to compact.
    sealed: int = 0
    seal_seconds: float = 0.0
    batches: list[Batch] = field(default_factory=list)
    bare_moves: list[Batch] = field(default_factory=list)
    compact_seconds: float = 0.0
    compact_cpu_seconds: float | None = None
    checkpoint: bool = True
    rewinds: dict[str, Rewind] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def scanned(self) -> int:
        return sum(b.scanned for b in self.batches)


def _one(conn: Conn, name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    row = conn.execute(q(name), params).fetchone()
    if row is None:
        raise RuntimeError(f"compaction bench: {name} returned no row")
    return row


def _changes(conn: Conn) -> int:
    return int(_one(conn, "change_count")["n"])


def _mark_all(conn: Conn, tenants: list[str], name: str) -> None:
    for tenant in tenants:
        conn.execute(q("mark"), {"tenant": tenant, "name": name})


# A short rewind takes a few hundredths of a second, where a neighbour's burst
# of work on a shared machine shows up as a doubling: short rewinds get more
# repeats, up to about this many seconds of measurement each.
REWIND_BUDGET_SECONDS = 1.0
MAX_REWIND_REPEATS = 25


def time_rewind(conn: Conn, rewind: Rewind, tenant: str, repeats: int) -> None:
    """One warm-up that also records what the rewind did, then timed repeats."""
    with conn.transaction(force_rollback=True):
        started = time.perf_counter()
        report = _one(conn, "rewind", {"tenant": tenant, "target": rewind.target})["report"]
        warm = time.perf_counter() - started
        rewind.digest = str(_one(conn, "tenant_digest", {"tenant": tenant})["digest"])
    rewind.changes_undone = int(report["changes_undone"])
    rewind.rows_touched = sum(int(v) for v in report["totals"].values())
    if repeats > 1:
        repeats = max(repeats, min(MAX_REWIND_REPEATS, int(REWIND_BUDGET_SECONDS / warm)))
    meter = CpuMeter([conn])
    for _ in range(repeats):
        with conn.transaction(force_rollback=True):
            cpu = meter.read()
            started = time.perf_counter()
            _one(conn, "rewind", {"tenant": tenant, "target": rewind.target})
            rewind.seconds.append(time.perf_counter() - started)
            if meter.available:
                rewind.cpu_seconds.append((meter.read() - cpu) / 1e9)


def _measure_rewinds(
    conn: Conn, results: Results, stage: str, targets: tuple[str, ...], say: Say
) -> None:
    history = _changes(conn)
    for target in targets:
        key = f"{target}@{stage}"
        rewind = Rewind(key, f"mark:{target}", history)
        time_rewind(conn, rewind, results.tenant, results.plan.repeats)
        results.rewinds[key] = rewind
        say(
            f"compaction: rewind to {rewind.target} ({stage}): {rewind.changes_undone:,} "
            f"changes, {rewind.rows_touched:,} rows, "
            + ", ".join(f"{s:.3f}" for s in rewind.seconds)
            + " s"
        )


def _hour(conn: Conn, plan: Plan, hour: int, rounds: int, tenants: list[str]) -> None:
    conn.execute(
        q("pick_hot"), {"hour": hour, "hot": plan.hot_rows, "per_xact": plan.rows_per_xact}
    )
    # Two of the hours carry a break mark for every class, taken mid-hour:
    # marks are cut points of their own, not only ticks.
    if hour in (4, 8) and rounds > 1:
        half = rounds // 2
        conn.execute(q("chart"), {"hour": hour, "from": 1, "to": half})
        _mark_all(conn, tenants, f"break-{hour // 4}")
        conn.execute(q("chart"), {"hour": hour, "from": half + 1, "to": rounds})
    else:
        conn.execute(q("chart"), {"hour": hour, "from": 1, "to": rounds})
    if hour % plan.discharge_every == 0:
        conn.execute(q("discharge"))
    conn.execute(q("tick"))


def build_history(conn: Conn, plan: Plan, results: Results, say: Say) -> None:
    started = time.perf_counter()
    seed.apply_schema(conn)
    installer.install(conn)
    seed.seed_tenants(
        conn,
        tenants=plan.tenants,
        patients_per_tenant=plan.patients_per_tenant,
        rng=random.Random(SEED),
    )
    conn.execute(q("initial_vitals"), {"per_patient": plan.vitals_per_patient})
    conn.execute(script("compaction_workload.sql"))
    conn.execute(q("async_commit"))
    tenants = [str(r["id"]) for r in conn.execute(q("tenants"))]
    results.tenant = tenants[0]
    conn.execute(q("tick"))
    _mark_all(conn, tenants, "launch")

    logged = _changes(conn)
    per_round = 0.0
    hour = 0
    probed = False
    while True:
        # The last hour is cut short so the history lands near plan.changes.
        remaining = plan.changes - logged
        if per_round and remaining < per_round / 2:
            break
        rounds = (
            plan.rounds if not per_round else max(1, min(plan.rounds, round(remaining / per_round)))
        )
        hour += 1
        _hour(conn, plan, hour, rounds, tenants)
        now = _changes(conn)
        per_round = (now - logged) / rounds
        logged = now
        say(f"compaction: hour {hour}: {logged:,} changes")
        if not probed and logged >= plan.probe_at:
            probed = True
            _probe(conn, results, say, "early")
    _probe(conn, results, say, None)
    conn.execute(q("tick"))
    conn.execute(q("sync_commit"))
    results.hours = hour
    results.generate_seconds = time.perf_counter() - started
    results.history = {
        k: int(v) for k, v in _one(conn, "history", {"tenant": results.tenant}).items()
    }


def _probe(conn: Conn, results: Results, say: Say, stage: str | None) -> None:
    """Mark `recent` for the timed class, then its short session after the mark.

    With a stage, the rewind to that mark is timed straight away; the one at
    the end of the history is timed with the other rewinds.
    """
    conn.execute(q("mark"), {"tenant": results.tenant, "name": "recent"})
    conn.execute(q("probe_session"), {"tenant": results.tenant})
    if stage is not None:
        # Statistics as an autovacuum would leave them; the end of the
        # history gets the same before its rewinds are timed.
        conn.execute(q("vacuum_analyze"))
        _measure_rewinds(conn, results, stage, ("recent",), say)


def bare_move(conn: Conn, results: Results, say: Say) -> None:
    """How fast rows merely move into the archive: the design's floor.

    Batch-sized id ranges at a quarter, half and three quarters into the
    log, each moved and rolled back (partitions created for it included).
    """
    span = _one(conn, "id_range")
    lo, hi = int(span["lo"]), int(span["hi"])
    for share in (0.25, 0.5, 0.75):
        start = lo + int((hi - lo) * share)
        rng = {"lo": start, "hi": start + results.plan.batch}
        with conn.transaction(force_rollback=True):
            conn.execute(q("range_partitions"), rng)
            started = time.perf_counter()
            moved = conn.execute(q("bare_move"), rng).rowcount
            results.bare_moves.append(Batch(moved, moved, 0, time.perf_counter() - started))
    say(
        "compaction: bare move into the archive: "
        + ", ".join(f"{b.scanned / b.seconds:,.0f}" for b in results.bare_moves)
        + " rows/s"
    )


def seal(conn: Conn, results: Results, say: Say) -> None:
    started = time.perf_counter()
    results.sealed = int(_one(conn, "seal_all")["result"]["sealed"])
    results.seal_seconds = time.perf_counter() - started
    say(f"compaction: sealed {results.sealed:,} changes first in {results.seal_seconds:.1f} s")


def compact(conn: Conn, results: Results, say: Say) -> None:
    results.thinned = int(_one(conn, "thin_ticks")["deleted"])
    meter = CpuMeter([conn])
    cpu = meter.read()
    started = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        result = _one(conn, "compact_batch", {"batch": results.plan.batch})["result"]
        elapsed = time.perf_counter() - t0
        if int(result["scanned"]) or not result["done"]:
            results.batches.append(
                Batch(int(result["scanned"]), int(result["archived"]), int(result["net"]), elapsed)
            )
        if result["done"]:
            break
    results.compact_seconds = time.perf_counter() - started
    if meter.available:
        results.compact_cpu_seconds = (meter.read() - cpu) / 1e9
    say(
        f"compaction: {len(results.batches)} batches, {results.scanned:,} rows in "
        f"{results.compact_seconds:.1f} s ({results.scanned / results.compact_seconds:,.0f} rows/s)"
    )


def _checkpoint(conn: Conn) -> bool:
    """Start compaction with no dirty history pending a checkpoint, when allowed."""
    try:
        conn.execute(query("server.sql", "checkpoint"))
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True


def run(create_db: Callable[[str], str], plan: Plan, facts: machine.Machine, say: Say) -> Results:
    """Build the history, measure, compact, measure again."""
    results = Results(plan)
    started = time.perf_counter()
    with connect(create_db("compaction"), "bench compaction", statement_timeout_ms=0) as conn:
        machine.add_server_facts(facts, conn)
        say(f"compaction: building a history of about {plan.changes:,} changes")
        build_history(conn, plan, results, say)
        bare_move(conn, results, say)
        conn.execute(q("vacuum_analyze"))
        results.before = dict(_one(conn, "stats")["stats"])
        _measure_rewinds(conn, results, "before", ("recent", "launch"), say)

        seal(conn, results, say)
        results.checkpoint = _checkpoint(conn)
        compact(conn, results, say)
        results.after = dict(_one(conn, "stats")["stats"])
        # Right after compaction the log holds dead rows no VACUUM has
        # cleared yet; time the rewinds then and after the daemon's upkeep.
        _measure_rewinds(conn, results, "compacted", ("recent", "launch"), say)
        results.upkeep = upkeep_log(conn).fields()
        results.after_vacuum_bytes = int(_one(conn, "log_bytes")["bytes"])
        say(
            f"compaction: the daemon's upkeep took {results.upkeep['seconds']:.1f} s, moved "
            f"{results.upkeep['rows_moved']:,} rows; "
            f"log {results.after_vacuum_bytes / 2**20:,.1f} MiB"
        )
        # Statistics as an autovacuum would leave them, as before compaction.
        conn.execute(q("vacuum_analyze"))
        _measure_rewinds(conn, results, "vacuumed", ("recent", "launch"), say)
        conn.execute(q("vacuum_full_log"))
        results.after_full_bytes = int(_one(conn, "log_bytes")["bytes"])
    results.seconds = time.perf_counter() - started
    return results
