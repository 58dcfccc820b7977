"""Capture cost: no trigger, the seed's naive trigger and simtrail, side by side.

Three databases on one server hold identical copies of the clinic fixture; the
workloads run on ``public.patient_vitals`` in each:

* ``none``: no capture trigger;
* ``naive``: the seed note's Solution 3 (a row trigger storing row_to_json);
* ``simtrail``: simtrail installed with the clinic's config.

Within every repeat the configurations take turns on each operation, in an
order that rotates from repeat to repeat, so background noise lands on all
three alike.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql

from bench.cpu import CpuMeter
from bench.sql import query, script
from simtrail.clinic import seed
from simtrail.db import Conn, connect
from simtrail.triggers import installer

CONFIGS = ("none", "naive", "simtrail")
LABELS = {"none": "no trigger", "naive": "naive trigger", "simtrail": "simtrail"}
OPS = ("INSERT", "UPDATE", "DELETE")
# Every table a configuration writes to while capturing vitals, vacuumed
# between measurements; the log tables are also what the storage line reports.
LOG_TABLES = {
    "none": (),
    "naive": ("public.simulation_tenant_changes",),
    "simtrail": ("simtrail.changes", "simtrail.transactions"),
}
TABLE = "public.patient_vitals"
NURSE = uuid.uuid5(uuid.NAMESPACE_URL, "https://simtrail.invalid/bench/nurse")
# One nurse per client, as in a class where each student charts their own
# patients: a single shared user row would turn every insert's foreign-key
# check into a MultiXact and measure that contention instead of capture.
MAX_CLIENTS = 16
CLIENT_NURSES = tuple(
    uuid.uuid5(uuid.NAMESPACE_URL, f"https://simtrail.invalid/bench/nurse/{n}")
    for n in range(MAX_CLIENTS)
)
CLAIMS = json.dumps(
    {
        "sub": str(NURSE),
        "role": "authenticated",
        "email": "bench.nurse@example.edu",
    }
)
SEED = 2025

Say = Callable[[str], None]


def seeded(value: int) -> random.Random:
    """Reproducible workload data; nothing here is a secret."""
    return random.Random(value)


Row = tuple[Any, ...]


@dataclass(frozen=True)
class Plan:
    repeats: int
    clients: int
    ops_per_client: int
    bulk_rows: int
    tenants: int = 5
    patients_per_tenant: int = 20


@dataclass
class Target:
    """One configuration's database and its open connections."""

    config: str
    dsn: str
    admin: Conn
    clients: list[psycopg.Connection[Any]]
    admin_cpu: CpuMeter
    clients_cpu: CpuMeter

    @property
    def tables(self) -> tuple[str, ...]:
        return (TABLE, *LOG_TABLES[self.config])

    def close(self) -> None:
        for conn in [*self.clients, self.admin]:
            conn.close()


# What one measurement records: wall-clock throughput or duration, and the
# on-CPU time of the server backends that did the work (when measurable).
KINDS = ("single", "bulk", "single_cpu", "bulk_cpu")


@dataclass
class Results:
    plan: Plan
    # kind -> operation -> configuration -> one value per repeat:
    # single: ops/s; bulk: seconds; single_cpu: backend µs per op; bulk_cpu: backend seconds
    values: dict[str, dict[str, dict[str, list[float]]]] = field(
        default_factory=lambda: {kind: {} for kind in KINDS}
    )
    # configuration -> log table -> (rows, bytes with indexes)
    logs: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)
    # Per configuration, (heap or index, bytes) of each log table, in order.
    log_parts: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    # Bulk UPDATE seconds on a fresh connection and on one that first ran
    # single-row statements: configuration -> session -> rows -> seconds.
    plan_cache: dict[str, dict[str, dict[int, float]]] = field(default_factory=dict)
    checkpoints: bool = True
    cpu: bool = False
    seconds: float = 0.0

    def record(self, kind: str, op: str, config: str, value: float) -> None:
        self.values[kind].setdefault(op, {c: [] for c in CONFIGS})[config].append(value)


def ident(qualified: str) -> sql.Identifier:
    return sql.Identifier(*qualified.split("."))


def prepare(config: str, dsn: str, plan: Plan) -> Target:
    """Clinic schema and seed data, then the configuration's capture."""
    admin = connect(dsn, f"bench {config}", statement_timeout_ms=0)
    seed.apply_schema(admin)
    seed.seed_tenants(
        admin,
        tenants=plan.tenants,
        patients_per_tenant=plan.patients_per_tenant,
        rng=seeded(SEED),
    )
    for nurse in (NURSE, *CLIENT_NURSES[: plan.clients]):
        admin.execute(query("capture.sql", "add_nurse"), {"nurse": nurse})
    if config == "naive":
        admin.execute(script("naive_trigger.sql"))
    elif config == "simtrail":
        installer.install(admin)
    for table in (TABLE, *LOG_TABLES[config]):
        admin.execute(query("capture.sql", "no_autovacuum").format(table=ident(table)))
    admin.execute(query("capture.sql", "set_claims"), {"claims": CLAIMS})
    clients = []
    for number in range(plan.clients):
        conn = psycopg.connect(
            dsn, autocommit=True, application_name=f"simtrail bench {config} client {number}"
        )
        conn.execute(query("capture.sql", "set_claims"), {"claims": CLAIMS})
        clients.append(conn)
    return Target(config, dsn, admin, clients, CpuMeter([admin]), CpuMeter(clients))


def patients(target: Target) -> list[tuple[uuid.UUID, uuid.UUID]]:
    rows = target.admin.execute(query("capture.sql", "patients")).fetchall()
    return [(r["id"], r["tenant_id"]) for r in rows]


class Settler:
    """Vacuums what a configuration writes to and flushes dirty pages, untimed.

    CHECKPOINT needs superuser or pg_checkpoint; without it, only the vacuum runs.
    """

    def __init__(self) -> None:
        self.checkpoints = True

    def __call__(self, target: Target) -> None:
        for table in target.tables:
            target.admin.execute(query("capture.sql", "vacuum").format(table=ident(table)))
        if self.checkpoints:
            try:
                target.admin.execute(query("server.sql", "checkpoint"))
            except psycopg.errors.InsufficientPrivilege:
                self.checkpoints = False


def single_work(
    rng: random.Random, plan: Plan, roster: Sequence[tuple[uuid.UUID, uuid.UUID]]
) -> dict[str, list[list[Row]]]:
    """Parameters for every client's INSERTs, then UPDATEs and DELETEs of the same rows."""
    inserts: list[list[Row]] = []
    for number in range(plan.clients):
        rows: list[Row] = []
        for _ in range(plan.ops_per_client):
            patient, tenant = rng.choice(roster)
            rows.append(
                (
                    uuid.UUID(int=rng.getrandbits(128), version=4),
                    tenant,
                    patient,
                    Decimal(rng.randint(361, 387)) / 10,
                    f"{rng.randint(96, 168)}/{rng.randint(54, 98)}",
                    rng.randint(56, 122),
                    rng.randint(12, 26),
                    Decimal(rng.randint(890, 1000)) / 10,
                    rng.randint(0, 8),
                    CLIENT_NURSES[number],
                )
            )
        inserts.append(rows)
    return {
        "INSERT": inserts,
        "UPDATE": [[(rng.randint(56, 122), rng.randint(0, 10), r[0]) for r in c] for c in inserts],
        "DELETE": [[(r[0],) for r in c] for c in inserts],
    }


def run_clients(
    conns: Sequence[psycopg.Connection[Any]], statement: sql.SQL, work: Sequence[Sequence[Row]]
) -> float:
    """Each client runs its statements on its own connection; returns operations per second."""
    barrier = threading.Barrier(len(conns) + 1)
    errors: list[BaseException] = []
    touched = [0] * len(conns)

    def client(number: int) -> None:
        try:
            with conns[number].cursor() as cur:
                barrier.wait()
                for params in work[number]:
                    cur.execute(statement, params)
                    touched[number] += cur.rowcount
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(len(conns))]
    for thread in threads:
        thread.start()
    with contextlib.suppress(threading.BrokenBarrierError):  # a client failed; raised below
        barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    expected = sum(len(w) for w in work)
    if sum(touched) != expected:
        raise RuntimeError(f"expected {expected} rows changed, got {sum(touched)}")
    return expected / elapsed


def run_bulk(conn: psycopg.Connection[Any], config: str, op: str, rows: int) -> float:
    """One statement over `rows` rows, autocommit; returns seconds including the commit."""
    statement = query("capture.sql", f"bulk_{op.lower()}")
    start = time.perf_counter()
    cur = conn.execute(statement, {"rows": rows, "nurse": NURSE})
    elapsed = time.perf_counter() - start
    if cur.rowcount != rows:
        raise RuntimeError(f"bulk {op} on {config} changed {cur.rowcount} rows, not {rows}")
    return elapsed


def rotation(repeat: int) -> tuple[str, ...]:
    shift = repeat % len(CONFIGS)
    return CONFIGS[shift:] + CONFIGS[:shift]


def one_round(
    targets: dict[str, Target],
    plan: Plan,
    results: Results,
    settle: Settler,
    rng: random.Random,
    roster: Sequence[tuple[uuid.UUID, uuid.UUID]],
    repeat: int,
    *,
    keep: bool,
) -> None:
    work = single_work(rng, plan, roster)
    order = rotation(repeat)
    ops = plan.clients * plan.ops_per_client
    for op in OPS:
        statement = query("capture.sql", f"{op.lower()}_one")
        for config in order:
            target = targets[config]
            settle(target)
            cpu = target.clients_cpu.read()
            value = run_clients(target.clients, statement, work[op])
            cpu = target.clients_cpu.read() - cpu
            if keep:
                results.record("single", op, config, value)
                if target.clients_cpu.available:
                    results.record("single_cpu", op, config, cpu / ops / 1e3)
    for op in OPS:
        for config in order:
            target = targets[config]
            settle(target)
            cpu = target.admin_cpu.read()
            value = run_bulk(target.admin, config, op, plan.bulk_rows)
            cpu = target.admin_cpu.read() - cpu
            if keep:
                results.record("bulk", op, config, value)
                if target.admin_cpu.available:
                    results.record("bulk_cpu", op, config, cpu / 1e9)
    for target in targets.values():
        left = target.admin.execute(
            query("capture.sql", "nurse_rows"), {"nurses": [NURSE, *CLIENT_NURSES]}
        )
        row = left.fetchone()
        if row is None or row["n"] != 0:
            raise RuntimeError(f"{target.config}: benchmark rows left behind")


def measure(targets: dict[str, Target], plan: Plan, say: Say) -> Results:
    results = Results(plan)
    rng = seeded(SEED + 1)  # not the seeder's stream: its ids are taken
    roster = patients(targets["none"])
    for config in CONFIGS[1:]:
        if patients(targets[config]) != roster:
            raise RuntimeError(f"{config}: seeded patients differ from the other databases")
    settle = Settler()
    started = time.perf_counter()
    say("capture: warm-up round (not recorded)")
    warm = Plan(1, plan.clients, max(20, plan.ops_per_client // 10), max(200, plan.bulk_rows // 10))
    one_round(targets, warm, results, settle, rng, roster, 0, keep=False)
    for repeat in range(plan.repeats):
        one_round(targets, plan, results, settle, rng, roster, repeat, keep=True)
        say(f"capture: repeat {repeat + 1}/{plan.repeats} done; " + progress(results))
    results.seconds = time.perf_counter() - started
    results.checkpoints = settle.checkpoints
    results.cpu = all(t.clients_cpu.available and t.admin_cpu.available for t in targets.values())
    for config, target in targets.items():
        results.logs[config] = {}
        for table in LOG_TABLES[config]:
            size = target.admin.execute(query("capture.sql", "table_size"), {"table": table})
            count = target.admin.execute(
                query("capture.sql", "count_rows").format(table=ident(table))
            )
            size_row, count_row = size.fetchone(), count.fetchone()
            assert size_row is not None and count_row is not None
            results.logs[config][table] = (int(count_row["n"]), int(size_row["bytes"]))
            parts = target.admin.execute(query("capture.sql", "relation_parts"), {"table": table})
            results.log_parts.setdefault(config, []).extend(
                (str(r["part"]), int(r["bytes"])) for r in parts.fetchall()
            )
    return results


SESSIONS = ("fresh connection", "after single-row statements")
WARM_STATEMENTS = 10  # enough for PostgreSQL to settle on a generic plan (it decides at the 6th)


def plan_cache(
    targets: dict[str, Target], results: Results, sizes: Sequence[int], say: Say
) -> None:
    """Bulk UPDATE timed on a new connection, and on one that has just run a few
    single-row statements, as a pooled application connection would have.

    PL/pgSQL caches the plans of a trigger function's statements per session.
    A plan made while transition tables held one row can be reused when they
    hold thousands; this shows whether that costs anything.
    """
    settle = Settler()
    rng = seeded(SEED + 3)
    roster = patients(targets["none"])
    for size in sizes:
        for config in CONFIGS:
            target = targets[config]
            for session in SESSIONS:
                # Vacuum and checkpoint first, not between the statements: ANALYZE
                # of the log would invalidate the cached plans under test.
                settle(target)
                with psycopg.connect(
                    target.dsn,
                    autocommit=True,
                    application_name=f"simtrail bench plan-cache {config}",
                ) as conn:
                    conn.execute(query("capture.sql", "set_claims"), {"claims": CLAIMS})
                    work = single_work(rng, Plan(1, 1, WARM_STATEMENTS, 0), roster)
                    if session == SESSIONS[1]:
                        for op in ("INSERT", "UPDATE"):
                            run_clients([conn], query("capture.sql", f"{op.lower()}_one"), work[op])
                    run_bulk(conn, config, "INSERT", size)
                    seconds = run_bulk(conn, config, "UPDATE", size)
                    run_bulk(conn, config, "DELETE", size)
                    if session == SESSIONS[1]:
                        run_clients([conn], query("capture.sql", "delete_one"), work["DELETE"])
                results.plan_cache.setdefault(config, {}).setdefault(session, {})[size] = seconds
        say(f"plan cache: bulk UPDATE of {size:,} rows done")


def progress(results: Results) -> str:
    parts = []
    for op, by_config in results.values["single"].items():
        values = "/".join(f"{by_config[c][-1]:.0f}" for c in CONFIGS)
        parts.append(f"{op} {values} ops/s")
    for op, by_config in results.values["bulk"].items():
        values = "/".join(f"{by_config[c][-1]:.2f}" for c in CONFIGS)
        parts.append(f"bulk {op} {values} s")
    return "; ".join(parts) + " (none/naive/simtrail)"
