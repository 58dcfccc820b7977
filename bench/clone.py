"""Clone cost: a template class copied into a new, empty class.

- simtrail: ``simtrail.clone_tenant(template, new)``;
- (a) the user's approach: a JSON snapshot of the template restored row by
  row with dynamic SQL, each row in its own exception block, new uuids from a
  jsonb id map (bench/sql/clone_baselines.sql);
- (b) the floor: one ``INSERT … SELECT`` per table, parents first, with every
  new key computed before the clock starts, in three trigger settings.

One scratch database per size holds the clinic schema, the template class
(the clinic fixture's seed, about 30 rows per patient over every configured
table) and two other classes of the user's size. Every repeat runs in a
transaction that is rolled back: it creates the app's tenants row of a new
class, clones into it, and checks the row count, so every repeat starts from
the same state and clones into a fresh, empty class. Within a repeat the
methods run back to back in an order that rotates between repeats.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from bench.cpu import CpuMeter
from bench.sql import query, script
from simtrail.clinic import seed
from simtrail.db import connect
from simtrail.triggers import installer

Conn = psycopg.Connection[dict[str, Any]]


def q(name: str) -> sql.SQL:
    return query("clone.sql", name)


@dataclass(frozen=True)
class Plan:
    patients: tuple[int, ...]  # template sizes, in patients (about 30 rows each)
    repeats: int
    other_classes: int = 2
    other_patients: int = 65  # the user's class: 65 patients are about 2,000 rows
    # A run expected (from the smaller sizes) or found to take longer than
    # `slow_seconds` is made without a warm-up; one expected to take longer
    # than `max_seconds` is not made, and a run is cancelled past it. A
    # method's repeats at one size stop once they add up to `budget_seconds`.
    slow_seconds: float = 10.0
    max_seconds: float = 45.0
    budget_seconds: float = 20.0


@dataclass(frozen=True)
class Method:
    key: str
    capture: bool  # simtrail's capture triggers on during the run
    replica: bool  # session_replication_role = replica for the run
    as_written: bool = False  # (a) with the user's per-row catalog reads and map growth
    max_rows: int | None = None  # runs only at templates up to this size


SIMTRAIL = Method("simtrail", capture=True, replica=False)  # sets replica mode itself
# As the user runs it today, in a database without simtrail: no capture.
USER = Method("user", capture=False, replica=False)
# The same in a database with simtrail: every row's INSERT is a captured statement.
USER_CAPTURED = Method("user_captured", capture=True, replica=False)
# As the user's function is written, at the user's class size only: it is
# there to tie this reproduction to the time the user reported.
USER_AS_WRITTEN = Method(
    "user_as_written", capture=False, replica=False, as_written=True, max_rows=3_000
)
USERS = (USER, USER_CAPTURED, USER_AS_WRITTEN)
# The table's own triggers all fire: foreign-key checks, the app's triggers, capture.
FLOOR = Method("floor", capture=True, replica=False)
# The clone's trigger set: capture only (replica mode skips FK checks and the app's).
FLOOR_REPLICA = Method("floor_replica", capture=True, replica=True)
# Nothing but the rows: no capture, no checks, no app triggers.
FLOOR_BARE = Method("floor_bare", capture=False, replica=True)
METHODS = (SIMTRAIL, USER, USER_CAPTURED, USER_AS_WRITTEN, FLOOR, FLOOR_REPLICA, FLOOR_BARE)


@dataclass
class Prepared:
    dsn: str
    template: str
    patients: int
    rows: dict[str, int]  # template rows per configured table
    keys: dict[str, list[Any]]  # table → [n, generated columns] of the floor's key tables
    floor: str  # the floor's statements, for PLACEHOLDER
    snapshot_bytes: int
    database_rows: int

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def tenant_rows(conn: Conn, tenant: str) -> dict[str, int]:
    counts = {}
    for row in conn.execute(q("tables"), {"tenant": tenant}).fetchall():
        rel = sql.SQL(row["rows"])  # rendered by simtrail from its catalog
        found = conn.execute(sql.SQL("SELECT count(*) AS n FROM {} AS r").format(rel)).fetchone()
        counts[row["table_name"]] = int(found["n"]) if found else 0
    return counts


def prepare(dsn: str, patients: int, plan: Plan) -> Prepared:
    """The template and the other classes, simtrail and the baselines installed."""
    with connect(dsn, "bench clone", statement_timeout_ms=0) as conn:
        seed.apply_schema(conn)
        (template,) = seed.seed_tenants(
            conn, tenants=1, patients_per_tenant=patients, rng=random.Random(f"template {patients}")
        )
        seed.seed_tenants(
            conn,
            tenants=plan.other_classes,
            patients_per_tenant=plan.other_patients,
            rng=random.Random(f"other classes {patients}"),
        )
        installer.install(conn)
        seed.apply_copy_config(conn)  # declared references and copy rules, as the tests have
        conn.execute(script("clone_baselines.sql"))
        conn.execute(q("save_snapshot"), {"tenant": str(template)})
        size = conn.execute(q("snapshot_size")).fetchone()
        keys = {
            r["table_name"]: [r["n"], r["generated"]]
            for r in conn.execute(q("floor_keys"), {"tenant": str(template)}).fetchall()
        }
        floor = floor_batch(conn, keys)
        conn.execute(q("vacuum"))
        everything = 0
        for other in conn.execute("SELECT id::text AS id FROM public.tenants").fetchall():
            everything += sum(tenant_rows(conn, other["id"]).values())
        return Prepared(
            dsn,
            str(template),
            patients,
            tenant_rows(conn, str(template)),
            keys,
            floor,
            int(size["bytes"]) if size else 0,
            everything,
        )


def _setup(conn: Conn, p: Prepared, method: Method) -> None:
    if not method.capture:
        for table in p.rows:
            conn.execute(q("capture_off").format(table=sql.SQL(table)))  # captured_tables text
    if method.replica:
        conn.execute(q("replica"))


# Written into the floor's statements once, then replaced by each repeat's class.
PLACEHOLDER = "00000000-0000-4000-8000-00000000c10e"


def floor_batch(conn: Conn, keys: dict[str, list[Any]]) -> str:
    """The floor's statements, parents first, as one batch for PLACEHOLDER."""
    texts = []
    for table, (n, _) in sorted(keys.items(), key=lambda kv: int(kv[1][0])):
        row = conn.execute(
            q("floor_statement"),
            {"n": n, "table": table, "target": PLACEHOLDER, "keys": json.dumps(keys)},
        ).fetchone()
        assert row is not None
        texts.append(str(row["statement"]))
    return ";\n".join(texts)


class CopyMismatch(RuntimeError):
    pass


class Settler:
    """After every run, untimed: VACUUM (the rolled-back rows leave dead tuples
    and index entries behind) and CHECKPOINT (needs superuser or pg_checkpoint),
    so that no run pays for the one before it."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self.checkpoints = True
        names = [r["name"] for r in conn.execute(q("written_tables")).fetchall()]
        # regclass text from the catalog
        self.vacuum = q("vacuum_tables").format(tables=sql.SQL(", ").join(map(sql.SQL, names)))

    def __call__(self) -> None:
        self.conn.execute(self.vacuum)
        if self.checkpoints:
            try:
                self.conn.execute(query("server.sql", "checkpoint"))
            except psycopg.errors.InsufficientPrivilege:
                self.checkpoints = False


def run_once(
    conn: Conn, p: Prepared, method: Method, meter: CpuMeter, timeout_s: float
) -> tuple[float, float | None, Any, str | None]:
    """One clone into a fresh class, timed (wall and backend CPU), checked, rolled back.

    The last value says what the user's restore failed to copy (it reports
    success with rows missing; that is its bug, measured, not ours); a wrong
    copy by simtrail or the floor raises CopyMismatch. Raises
    psycopg.errors.QueryCanceled past `timeout_s`."""
    with conn.transaction(force_rollback=True):
        row = conn.execute(q("new_tenant"), {"name": f"bench clone ({method.key})"}).fetchone()
        assert row is not None
        target = str(row["id"])
        _setup(conn, p, method)
        batch = p.floor.replace(PLACEHOLDER, target).encode()  # uuid text: nothing to quote
        report: Any = None
        conn.execute(q("timeout"), {"ms": str(int(timeout_s * 1000))})
        cpu = meter.read()
        started = time.perf_counter()
        if method is SIMTRAIL:
            done = conn.execute(q("clone"), {"source": p.template, "target": target}).fetchone()
            report = done["report"] if done else None
        elif method in USERS:
            try:
                # A savepoint: the user's restore can fail outright (a drawn
                # wristband taken by another class), and that is measured.
                with conn.transaction():
                    done = conn.execute(
                        q("restore"), {"target": target, "as_written": method.as_written}
                    ).fetchone()
                report = done["report"] if done else None
            except psycopg.errors.UniqueViolation as exc:
                report = {"failed": [f"aborted: {str(exc).splitlines()[0]}"]}
        else:
            conn.execute(batch)
        seconds = time.perf_counter() - started
        cpu_seconds = (meter.read() - cpu) / 1e9 if meter.available else None
        copied = tenant_rows(conn, target)
        failed = method in USERS and report and report.get("failed")
        shortfall = None
        if copied != p.rows or failed:
            shortfall = (
                f"copied {sum(copied.values()):,} rows of {p.total:,}"
                f" ({_differences(copied, p.rows) or 'every table complete'});"
                f" its report: {json.dumps(report.get('failed') if report else None)[:300]}"
            )
            if method not in USERS:
                raise CopyMismatch(f"{method.key} {shortfall}")
    return seconds, cpu_seconds, report, shortfall


def _differences(got: dict[str, int], want: dict[str, int]) -> str:
    return ", ".join(f"{t}: {got.get(t, 0)} of {n}" for t, n in want.items() if got.get(t) != n)
