"""Rewind cost: a class session on the clinic schema, undone three ways.

- simtrail: ``simtrail.rewind(class, 'mark:launch')``;
- (a) what the user does today: delete every row of the class and re-insert
  it from a JSON snapshot saved at launch;
- (b) the floor: bare set-based DML of exactly the net rows (deletes, inserts,
  updates) from a perfect side copy prepared beforehand.

Each measurement runs in a transaction that is rolled back, so every repeat
starts from the same state and the three are interleaved within a repeat.
(a) and (b) run with simtrail's triggers disabled and in replica mode: they
pay for neither capture nor foreign-key checks, while simtrail's rewind
captures its own changes (they are history).
"""

from __future__ import annotations

import json
import random
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from bench.cpu import CpuMeter
from bench.sql import query
from simtrail.clinic import seed
from simtrail.db import connect
from simtrail.triggers import installer

Conn = psycopg.Connection[dict[str, Any]]
CAPTURE_TRIGGERS = ("insert", "update", "delete", "truncate")


def q(name: str) -> sql.SQL:
    return query("rewind.sql", name)


@dataclass(frozen=True)
class Plan:
    sizes: tuple[int, ...]  # logged changes of the class to undo
    repeats: int
    vitals_per_patient: int  # charting before launch, so a tenth is a real share
    other_log_rows: int
    latency_seconds: float


@dataclass
class SizeResult:
    changes: int
    rows_touched: int
    class_rows: int
    simtrail: list[float] = field(default_factory=list)
    full_restore: list[float] = field(default_factory=list)
    bare_dml: list[float] = field(default_factory=list)
    # Where simtrail's time goes: PHASES, per repeat (seconds).
    phases: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class Results:
    sizes: list[SizeResult] = field(default_factory=list)
    empty_log: list[float] = field(default_factory=list)
    big_log: list[float] = field(default_factory=list)
    other_log_rows: int = 0
    # The log read's plan, before and after the other class's rows.
    read_before: ReadProfile | None = None
    read_after: ReadProfile | None = None
    idle_latencies_ms: list[float] = field(default_factory=list)
    busy_latencies_ms: list[float] = field(default_factory=list)
    # Why the busy p99 grows, from /proc/<pid>/schedstat (empty when the
    # server is not on this host): the writers' backends' wait for a CPU per
    # insert, idle and busy, and the rewinding backend's share of a CPU.
    idle_wait_us: float | None = None
    busy_wait_us: float | None = None
    rewinder_cpu_share: float | None = None


@dataclass(frozen=True)
class ReadProfile:
    """How rewind_stage read the log once: its statement's time and buffers,
    and the scan it chose for this class's changes."""

    ms: float
    scan: str  # e.g. "Seq Scan", "Bitmap Heap Scan"
    scan_ms: float
    hit: int  # shared buffers found in PostgreSQL's cache
    read: int  # shared buffers read from the OS


@dataclass(frozen=True)
class Table:
    name: str
    rel: sql.Composable
    pk: list[str]
    joins: sql.Composable
    tenant: sql.Composable
    depth: int
    columns: list[str]


def tables(conn: Conn) -> list[Table]:
    found = []
    for row in conn.execute(q("tables")).fetchall():
        rel = sql.SQL(row["rel"])  # a regclass from the catalog
        columns = [
            r["attname"]
            for r in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
                " AND NOT attisdropped AND attgenerated = '' ORDER BY attnum",
                (row["rel"],),
            )
        ]
        found.append(
            Table(
                row["table_name"],
                rel,
                list(row["pk_columns"]),
                sql.SQL(row["lookup"]["joins"]),  # rendered by simtrail from the catalog
                sql.SQL(row["lookup"]["tenant"]),
                int(row["depth"]),
                columns,
            )
        )
    return found


def _cols(names: list[str], prefix: str | None = None) -> sql.Composable:
    if prefix is None:
        return sql.SQL(", ").join(sql.Identifier(n) for n in names)
    return sql.SQL(", ").join(sql.Identifier(prefix, n) for n in names)


def _match(pk: list[str], left: str, right: str) -> sql.Composable:
    return sql.SQL(" AND ").join(
        sql.SQL("{} = {}").format(sql.Identifier(left, c), sql.Identifier(right, c)) for c in pk
    )


def _class_rows(t: Table) -> sql.Composable:
    return sql.SQL("SELECT r.* FROM {rel} AS r{joins} WHERE {tenant} = %(tenant)s").format(
        rel=t.rel, joins=t.joins, tenant=t.tenant
    )


@dataclass
class Prepared:
    dsn: str
    tenant: str
    others: list[str]
    tables: list[Table]
    changes: int
    rows_touched: int
    class_rows: int


def prepare(dsn: str, changes: int, vitals_per_patient: int) -> Prepared:
    """A clinic with three classes of 30 patients; one class charts `changes` changes."""
    with connect(dsn, "bench rewind", statement_timeout_ms=0) as conn:
        seed.apply_schema(conn)
        installer.install(conn)
        ids = seed.seed_tenants(conn, tenants=3, patients_per_tenant=30, rng=random.Random(30))
        tenant, *others = [str(t) for t in ids]
        conn.execute(q("bulk_history"), {"tenant": tenant, "per_patient": vitals_per_patient})
        conn.execute("SELECT simtrail.mark(%s, 'launch')", (tenant,))
        found = tables(conn)
        class_rows = 0
        for i, t in enumerate(found):
            # The user's JSON snapshot (baseline a) and the side copy (baseline b).
            conn.execute(
                sql.SQL(
                    "CREATE TABLE {snap} AS SELECT coalesce(json_agg(row_to_json(x)), '[]')"
                    " AS data FROM ({rows}) AS x"
                ).format(snap=sql.Identifier(f"bench_snap_{i}"), rows=_class_rows(t)),
                {"tenant": tenant},
            )
            conn.execute(
                sql.SQL("CREATE TABLE {side} AS {rows}").format(
                    side=sql.Identifier(f"bench_side_{i}"), rows=_class_rows(t)
                ),
                {"tenant": tenant},
            )
            row = conn.execute(
                sql.SQL("SELECT count(*) AS n FROM {}").format(sql.Identifier(f"bench_side_{i}"))
            ).fetchone()
            class_rows += int(row["n"]) if row else 0

        # The session: new charting, one discharge (a cascade through every
        # child table), then rounds of corrections until enough changes.
        start = _count(conn, tenant)
        conn.execute(q("session_inserts"), {"tenant": tenant, "per_patient": 5})
        conn.execute(q("session_discharge"), {"tenant": tenant})
        round_ = 0
        while _count(conn, tenant) - start < changes:
            round_ += 1
            conn.execute(q("session_updates"), {"tenant": tenant, "round": round_})
        logged = _count(conn, tenant) - start

        touched = 0
        for i, t in enumerate(found):
            touched += _diff_tables(conn, t, i, tenant)
        conn.execute("VACUUM ANALYZE")
    return Prepared(dsn, tenant, others, found, logged, touched, class_rows)


def _count(conn: Conn, tenant: str) -> int:
    row = conn.execute(q("class_changes"), {"tenant": tenant}).fetchone()
    return int(row["n"]) if row else 0


def _diff_tables(conn: Conn, t: Table, i: int, tenant: str) -> int:
    """The net rows of baseline (b), worked out from the side copy before timing."""
    side, rel = sql.Identifier(f"bench_side_{i}"), t.rel
    pk = _cols(t.pk)
    conn.execute(
        sql.SQL(
            "CREATE TABLE {d} AS SELECT {pk} FROM ({rows}) AS live EXCEPT SELECT {pk} FROM {side}"
        ).format(d=sql.Identifier(f"bench_del_{i}"), pk=pk, rows=_class_rows(t), side=side),
        {"tenant": tenant},
    )
    conn.execute(
        sql.SQL(
            "CREATE TABLE {ins} AS SELECT s.* FROM {side} AS s"
            " WHERE NOT EXISTS (SELECT 1 FROM {rel} AS r WHERE {match})"
        ).format(
            ins=sql.Identifier(f"bench_ins_{i}"), side=side, rel=rel, match=_match(t.pk, "r", "s")
        )
    )
    conn.execute(
        sql.SQL(
            "CREATE TABLE {upd} AS SELECT s.* FROM {side} AS s JOIN {rel} AS r ON {match}"
            " WHERE to_jsonb(r) <> to_jsonb(s)"
        ).format(
            upd=sql.Identifier(f"bench_upd_{i}"), side=side, rel=rel, match=_match(t.pk, "r", "s")
        )
    )
    total = 0
    for kind in ("del", "ins", "upd"):
        row = conn.execute(
            sql.SQL("SELECT count(*) AS n FROM {}").format(sql.Identifier(f"bench_{kind}_{i}"))
        ).fetchone()
        total += int(row["n"]) if row else 0
    return total


@contextmanager
def rolled_back(conn: Conn, *, bare: bool, tabs: list[Table]) -> Iterator[None]:
    """A transaction that is always rolled back; `bare` switches capture off in it."""
    with conn.transaction(force_rollback=True):
        if bare:
            for t in tabs:
                for op in CAPTURE_TRIGGERS:
                    conn.execute(
                        sql.SQL("ALTER TABLE {} DISABLE TRIGGER {}").format(
                            t.rel, sql.Identifier(f"simtrail_capture_{op}")
                        )
                    )
            conn.execute(q("replica"))
        yield


def time_simtrail(conn: Conn, p: Prepared) -> float:
    with rolled_back(conn, bare=False, tabs=p.tables):
        started = time.perf_counter()
        conn.execute(q("rewind"), {"tenant": p.tenant}).fetchone()
        return time.perf_counter() - started


# Each phase is the difference between two runs that stop at successive
# points of the same rewind (rewind_stage, rewind_plan, the whole rewind with
# capture off, the whole rewind), so the phases add up to the rewind.
PHASES = (
    "read the log, then the live rows it names",
    "checks before writing (moves, drift)",
    "write: DML in replica mode and foreign-key checks",
    "capture of the rewind's own changes",
)


def _timed(conn: Conn, p: Prepared, name: str, *, bare: bool) -> float:
    with rolled_back(conn, bare=bare, tabs=p.tables):
        started = time.perf_counter()
        conn.execute(q(name), {"tenant": p.tenant}).fetchone()
        return time.perf_counter() - started


def time_phases(conn: Conn, p: Prepared) -> dict[str, float]:
    # Untimed: the first read after a rolled-back rewind sets the hint bits
    # of its dead rows, a cost the timed runs would otherwise pay unevenly.
    _timed(conn, p, "stage", bare=False)
    points = [
        _timed(conn, p, "stage", bare=False),
        _timed(conn, p, "plan", bare=False),
        _timed(conn, p, "rewind", bare=True),
        _timed(conn, p, "rewind", bare=False),
    ]
    previous = 0.0
    out = {}
    for phase, point in zip(PHASES, points, strict=True):
        out[phase] = point - previous
        previous = point
    return out


def time_full_restore(conn: Conn, p: Prepared) -> float:
    with rolled_back(conn, bare=True, tabs=p.tables):
        started = time.perf_counter()
        for t in sorted(p.tables, key=lambda x: -x.depth):
            conn.execute(
                sql.SQL(
                    "DELETE FROM {rel} AS d WHERE ({pk}) IN (SELECT {rpk} FROM ({rows}) AS r)"
                ).format(rel=t.rel, pk=_cols(t.pk, "d"), rpk=_cols(t.pk, "r"), rows=_class_rows(t)),
                {"tenant": p.tenant},
            )
        for i, t in sorted(enumerate(p.tables), key=lambda x: x[1].depth):
            conn.execute(
                sql.SQL(
                    "INSERT INTO {rel} ({cols}) OVERRIDING SYSTEM VALUE SELECT {cols}"
                    " FROM {snap}, json_populate_recordset(NULL::{rel}, {snap}.data)"
                ).format(rel=t.rel, cols=_cols(t.columns), snap=sql.Identifier(f"bench_snap_{i}"))
            )
        return time.perf_counter() - started


def time_bare_dml(conn: Conn, p: Prepared) -> float:
    with rolled_back(conn, bare=True, tabs=p.tables):
        started = time.perf_counter()
        for i, t in enumerate(p.tables):
            conn.execute(
                sql.SQL("DELETE FROM {rel} AS r USING {d} AS k WHERE {match}").format(
                    rel=t.rel, d=sql.Identifier(f"bench_del_{i}"), match=_match(t.pk, "r", "k")
                )
            )
            non_key = [c for c in t.columns if c not in t.pk]
            if non_key:
                conn.execute(
                    sql.SQL(
                        "UPDATE {rel} AS r SET ({cols}) = ROW({vals}) FROM {u} AS k WHERE {m}"
                    ).format(
                        rel=t.rel,
                        cols=_cols(non_key),
                        vals=_cols(non_key, "k"),
                        u=sql.Identifier(f"bench_upd_{i}"),
                        m=_match(t.pk, "r", "k"),
                    )
                )
            conn.execute(
                sql.SQL(
                    "INSERT INTO {rel} ({cols}) OVERRIDING SYSTEM VALUE SELECT {cols} FROM {ins}"
                ).format(rel=t.rel, cols=_cols(t.columns), ins=sql.Identifier(f"bench_ins_{i}"))
            )
        return time.perf_counter() - started


def measure_size(p: Prepared, repeats: int) -> SizeResult:
    result = SizeResult(p.changes, p.rows_touched, p.class_rows)
    with psycopg.connect(p.dsn, autocommit=True, row_factory=dict_row) as conn:
        conn.execute("SET statement_timeout = 0")
        # One warm-up of each, then interleaved repeats.
        runs: list[tuple[Callable[[Conn, Prepared], float], list[float]]] = [
            (time_simtrail, result.simtrail),
            (time_full_restore, result.full_restore),
            (time_bare_dml, result.bare_dml),
        ]
        for fn, _ in runs:
            fn(conn, p)
        for _ in range(repeats):
            for fn, out in runs:
                out.append(fn(conn, p))
            for phase, seconds in time_phases(conn, p).items():
                result.phases.setdefault(phase, []).append(seconds)
    return result


def measure_big_log(p: Prepared, plan: Plan, results: Results) -> None:
    """The same rewind before and after another tenant's history fills the log."""
    with psycopg.connect(p.dsn, autocommit=True, row_factory=dict_row) as conn:
        conn.execute("SET statement_timeout = 0")
        time_simtrail(conn, p)
        results.empty_log = [time_simtrail(conn, p) for _ in range(plan.repeats)]
        results.read_before = read_profile(conn, p)
        conn.execute(q("other_log"), {"rows": plan.other_log_rows})
        conn.execute(q("analyze_log"))
        conn.execute(q("checkpoint"))
        time_simtrail(conn, p)
        results.big_log = [time_simtrail(conn, p) for _ in range(plan.repeats)]
        results.read_after = read_profile(conn, p)
        results.other_log_rows = plan.other_log_rows


def read_profile(conn: Conn, p: Prepared) -> ReadProfile | None:
    """The plan of rewind_stage's log read, from auto_explain; None when the
    role may not load it."""
    notices: list[str] = []
    try:
        with conn.transaction(force_rollback=True):
            conn.execute(q("read_profile_on"))
    except psycopg.errors.InsufficientPrivilege:
        return None

    def keep(d: psycopg.errors.Diagnostic) -> None:
        notices.append(d.message_primary or "")

    conn.add_notice_handler(keep)
    try:
        with rolled_back(conn, bare=False, tabs=p.tables):
            conn.execute(q("read_profile_on"))
            conn.execute(q("stage"), {"tenant": p.tenant}).fetchone()
    finally:
        conn.remove_notice_handler(keep)
    for notice in notices:
        head, _, body = notice.partition("plan:")
        if "simtrail.rewind_keys" not in body:
            continue
        top = json.loads(body)["Plan"]
        scan = _log_scan(top)
        if scan is None:
            continue
        return ReadProfile(
            ms=float(head.split()[1]),
            scan=str(scan["Node Type"]),
            scan_ms=float(scan["Actual Total Time"]),
            hit=int(top.get("Shared Hit Blocks", 0)),
            read=int(top.get("Shared Read Blocks", 0)),
        )
    return None


def _log_scan(node: dict[str, Any]) -> dict[str, Any] | None:
    """The first scan of simtrail.changes under the Append of the event read."""
    if node.get("Node Type") == "Append":
        first = node.get("Plans", [{}])[0]
        return first if first.get("Relation Name") == "changes" else None
    for child in node.get("Plans", []):
        found = _log_scan(child)
        if found is not None:
            return found
    return None


def measure_latency(p: Prepared, plan: Plan, results: Results) -> None:
    """Single-row writes of another class: idle, then while rewinds run back to back."""
    stop = threading.Event()
    samples: list[float] = []
    waits: list[int] = []

    def writer() -> None:
        with connect(p.dsn, "bench rewind latency writer") as conn:
            row = conn.execute(q("a_patient"), {"tenant": p.others[0]}).fetchone()
            assert row is not None
            meter = CpuMeter([conn])
            _, waited = meter.read_both()
            while not stop.is_set():
                started = time.perf_counter()
                conn.execute(q("single_write"), (p.others[0], row["id"]))
                samples.append((time.perf_counter() - started) * 1000)
            if meter.available:
                waits.append(meter.read_both()[1] - waited)

    def run(busy: bool) -> tuple[list[float], float | None, float | None]:
        samples.clear()
        waits.clear()
        stop.clear()
        threads = [threading.Thread(target=writer) for _ in range(2)]
        for t in threads:
            t.start()
        share = None
        with connect(p.dsn, "bench rewind latency") as conn:
            meter = CpuMeter([conn])
            started, (cpu, _) = time.perf_counter(), meter.read_both()
            deadline = time.monotonic() + plan.latency_seconds
            while time.monotonic() < deadline:
                if busy:
                    time_simtrail(conn, p)
                else:
                    time.sleep(0.05)
            if meter.available:
                share = (meter.read_both()[0] - cpu) / 1e9 / (time.perf_counter() - started)
        stop.set()
        for t in threads:
            t.join()
        wait = sum(waits) / 1e3 / len(samples) if len(waits) == len(threads) and samples else None
        return list(samples), wait, share

    results.idle_latencies_ms, results.idle_wait_us, _ = run(busy=False)
    results.busy_latencies_ms, results.busy_wait_us, results.rewinder_cpu_share = run(busy=True)


def p99(values: list[float]) -> float:
    if len(values) < 2:
        return float("nan")
    return statistics.quantiles(values, n=100)[98]


def run(create_db: Callable[[str], str], plan: Plan, say: Callable[[str], None]) -> Results:
    results = Results()
    last: Prepared | None = None
    for size in plan.sizes:
        say(f"rewind: preparing a class session of about {size:,} changes")
        prepared = prepare(create_db(f"rewind_{size}"), size, plan.vitals_per_patient)
        say(f"rewind: {prepared.changes:,} changes, {prepared.rows_touched:,} rows touched")
        results.sizes.append(measure_size(prepared, plan.repeats))
        last = prepared
    if last is not None:
        say("rewind: other classes' write latency, idle and during rewinds")
        measure_latency(last, plan, results)
        say(f"rewind: adding {plan.other_log_rows:,} log rows of another class")
        measure_big_log(last, plan, results)
    return results
