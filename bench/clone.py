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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from bench import machine
from bench.sql import query, script
from simtrail.clinic import seed
from simtrail.db import connect
from simtrail.errors import SimtrailError
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
    # The user's approach is slow: past `user_full_rows` template rows it runs
    # once (no warm-up); captured, past `captured_full_rows` once and past
    # `captured_max_rows` not at all (over a minute a run).
    user_full_rows: int = 25_000
    captured_full_rows: int = 2_500
    captured_max_rows: int = 25_000


@dataclass(frozen=True)
class Method:
    key: str
    capture: bool  # simtrail's capture triggers on during the run
    replica: bool  # session_replication_role = replica for the run


SIMTRAIL = Method("simtrail", capture=True, replica=False)  # sets replica mode itself
# As the user runs it today, in a database without simtrail: no capture.
USER = Method("user", capture=False, replica=False)
# The same in a database with simtrail: every row's INSERT is a captured statement.
USER_CAPTURED = Method("user_captured", capture=True, replica=False)
# The table's own triggers all fire: foreign-key checks, the app's triggers, capture.
FLOOR = Method("floor", capture=True, replica=False)
# The clone's trigger set: capture only (replica mode skips FK checks and the app's).
FLOOR_REPLICA = Method("floor_replica", capture=True, replica=True)
# Nothing but the rows: no capture, no checks, no app triggers.
FLOOR_BARE = Method("floor_bare", capture=False, replica=True)
METHODS = (SIMTRAIL, USER, USER_CAPTURED, FLOOR, FLOOR_REPLICA, FLOOR_BARE)


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


@dataclass
class Statement:
    text: str
    calls: int
    ms: float


@dataclass
class Profile:
    seconds: float  # the profiled run, instrumentation included
    functions: list[dict[str, Any]]
    statements: list[Statement]
    plans: list[dict[str, Any]]  # the slowest few, as auto_explain gave them


@dataclass
class SizeResult:
    patients: int
    rows: dict[str, int]
    snapshot_bytes: int
    database_rows: int
    seconds: dict[str, list[float]] = field(default_factory=dict)
    report: Any = None  # simtrail's report of its first clone
    profile: Profile | None = None
    checkpoints: bool = True

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


def repeats_for(method: Method, rows: int, plan: Plan) -> int:
    """Timed runs of `method` at a template of `rows` rows; 0 skips it."""
    if method is USER_CAPTURED:
        if rows > plan.captured_max_rows:
            return 0
        return plan.repeats if rows <= plan.captured_full_rows else 1
    if method is USER and rows > plan.user_full_rows:
        return 1
    return plan.repeats


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


def run_once(conn: Conn, p: Prepared, method: Method) -> tuple[float, Any]:
    """One clone into a fresh class, timed, checked and rolled back."""
    with conn.transaction(force_rollback=True):
        row = conn.execute(q("new_tenant"), {"name": f"bench clone ({method.key})"}).fetchone()
        assert row is not None
        target = str(row["id"])
        _setup(conn, p, method)
        batch = p.floor.replace(PLACEHOLDER, target).encode()  # uuid text: nothing to quote
        report: Any = None
        started = time.perf_counter()
        if method is SIMTRAIL:
            done = conn.execute(q("clone"), {"source": p.template, "target": target}).fetchone()
            report = done["report"] if done else None
        elif method in (USER, USER_CAPTURED):
            done = conn.execute(q("restore"), {"target": target}).fetchone()
            report = done["report"] if done else None
        else:
            conn.execute(batch)
        seconds = time.perf_counter() - started
        copied = tenant_rows(conn, target)
        failed = method in (USER, USER_CAPTURED) and report and report.get("failed")
        if copied != p.rows or failed:
            raise CopyMismatch(
                f"{method.key} copied {sum(copied.values()):,} rows of {p.total:,}"
                f" ({_differences(copied, p.rows)}); report: {report}"
            )
    return seconds, report


def _differences(got: dict[str, int], want: dict[str, int]) -> str:
    return ", ".join(f"{t}: {got.get(t, 0)} of {n}" for t, n in want.items() if got.get(t) != n)


def measure(p: Prepared, plan: Plan, say: Callable[[str], None]) -> SizeResult:
    result = SizeResult(p.patients, p.rows, p.snapshot_bytes, p.database_rows)
    wanted = {m.key: repeats_for(m, p.total, plan) for m in METHODS}
    with connect(p.dsn, "bench clone", statement_timeout_ms=0) as conn:
        settle = Settler(conn)
        # One warm-up of each (plans, caches, PL/pgSQL compiled), then the
        # interleaved repeats; a method that runs once gets no warm-up.
        for method in METHODS:
            result.seconds[method.key] = []
            if wanted[method.key] < plan.repeats:
                continue
            _, report = run_once(conn, p, method)
            settle()
            if method is SIMTRAIL:
                result.report = report
        for i in range(plan.repeats):
            order = METHODS[i % len(METHODS) :] + METHODS[: i % len(METHODS)]
            for method in order:
                if len(result.seconds[method.key]) >= wanted[method.key]:
                    continue
                seconds, report = run_once(conn, p, method)
                settle()
                result.seconds[method.key].append(seconds)
                if method is SIMTRAIL and result.report is None:
                    result.report = report
            say(
                f"clone: {p.total:,} rows, repeat {i + 1}: "
                + ", ".join(f"{k} {v[-1]:.3f} s" for k, v in result.seconds.items() if v)
            )
        result.checkpoints = settle.checkpoints
    return result


def profile(p: Prepared) -> Profile | None:
    """simtrail's clone once more, every statement explained; None when not permitted."""
    notices: list[str] = []
    with connect(p.dsn, "bench clone profile", statement_timeout_ms=0) as conn:
        try:
            with conn.transaction(force_rollback=True):
                conn.execute(q("profile_on"))
        except psycopg.errors.InsufficientPrivilege:
            return None
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        with conn.transaction(force_rollback=True):
            row = conn.execute(q("new_tenant"), {"name": "bench clone (profile)"}).fetchone()
            assert row is not None
            conn.execute(q("profile_on"))
            started = time.perf_counter()
            conn.execute(q("clone"), {"source": p.template, "target": str(row["id"])})
            seconds = time.perf_counter() - started
            functions = [dict(r) for r in conn.execute(q("function_times")).fetchall()]
    return _profile(seconds, functions, notices)


def _profile(seconds: float, functions: list[dict[str, Any]], notices: list[str]) -> Profile:
    by_text: dict[str, Statement] = {}
    plans: list[dict[str, Any]] = []
    for notice in notices:
        head, _, body = notice.partition("plan:")
        if not head.startswith("duration:") or not body.strip():
            continue
        ms = float(head.split()[1])
        try:
            doc = json.loads(body)
        except json.JSONDecodeError:
            continue
        text = " ".join(str(doc.get("Query Text", "")).split())
        if text.startswith("SELECT simtrail.clone_tenant("):
            continue  # the whole run
        entry = by_text.setdefault(text, Statement(text, 0, 0.0))
        entry.calls += 1
        entry.ms += ms
        plans.append(
            {
                "ms": ms,
                "text": text,
                "plan": doc.get("Plan", {}),
                "triggers": doc.get("Triggers", []),
            }
        )
    plans.sort(key=lambda d: -float(d["ms"]))
    statements = sorted(by_text.values(), key=lambda s: -s.ms)
    return Profile(seconds, functions, statements, plans[:5])


def run(
    create_db: Callable[[str], str],
    plan: Plan,
    say: Callable[[str], None],
    facts: machine.Machine,
) -> list[SizeResult]:
    results = []
    last: Prepared | None = None
    for patients in plan.patients:
        say(f"clone: preparing a template class of {patients:,} patients")
        started = time.perf_counter()
        prepared = prepare(create_db(f"clone_{patients}"), patients, plan)
        with connect(prepared.dsn, "bench clone") as conn:
            if last is None:
                machine.add_server_facts(facts, conn)
            found = conn.execute(q("has_clone")).fetchone()
            if not (found and found["ok"]):
                raise SimtrailError("simtrail.clone_tenant(text, text, text, boolean) is missing")
        say(
            f"clone: {prepared.total:,} template rows, {prepared.database_rows:,} in the"
            f" database ({time.perf_counter() - started:.0f} s)"
        )
        results.append(measure(prepared, plan, say))
        last = prepared
    if last is not None:
        say("clone: profiling simtrail's clone at the largest size")
        results[-1].profile = profile(last)
    return results
