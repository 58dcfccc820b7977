"""Where simtrail's capture time goes: the same work with parts taken out.

The three configuration databases of the capture run are reused. One client
connection per database runs single-row statements (each its own transaction,
``synchronous_commit = off`` so the disk's flush latency drops out) and then
the bulk statements. The measure is the on-CPU time of that connection's
backend (see :mod:`bench.cpu`), or wall time where that cannot be read.

Variants of the simtrail database come in two kinds:

* a ladder that builds the capture function up step by step, from an empty
  function to the full one, so consecutive rows add up to the whole cost;
* single removals from the function as installed, each taking one part out.

Each variant is applied, measured and undone; the log is emptied first, so no
variant inherits a bigger log. Rewrites work on the text the installer
generated; when that text no longer contains what a variant rewrites, the
variant is reported as not applicable rather than measuring something else.
"""

from __future__ import annotations

import random
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from bench.capture import (
    CLAIMS,
    CONFIGS,
    KINDS,
    LOG_TABLES,
    OPS,
    SEED,
    Plan,
    Say,
    Settler,
    Target,
    ident,
    run_bulk,
    run_clients,
    seeded,
    single_work,
)
from bench.cpu import CpuMeter
from bench.sql import query
from simtrail.db import Conn


@dataclass(frozen=True)
class Installed:
    """The capture of public.patient_vitals as the installer generated it."""

    function: str
    definition: str
    indexes: tuple[tuple[str, str], ...]  # (name, CREATE INDEX text) of the log's secondary indexes

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier("simtrail", self.function)


class NotApplicable(Exception):
    """The generated code no longer has what this variant changes."""


Change = Callable[[Conn, Installed], None]


@dataclass(frozen=True)
class Variant:
    key: str
    config: str
    label: str
    change: Change | None = None
    group: str = "baseline"  # "baseline", "ladder" or "removal"
    skip: frozenset[str] = frozenset()  # operations the variant cannot run correctly


def q(name: str) -> sql.SQL:
    return query("anatomy.sql", name)


def _edit(text: str, pattern: str, replacement: str, what: str) -> str:
    new, count = re.subn(pattern, replacement, text, flags=re.DOTALL)
    if count == 0:
        raise NotApplicable(f"the generated {what} has no match for {pattern!r}")
    return new


# Parts of the generated capture function, as regular expressions.
# The registration (capture.sql, render_registration): the probe of
# simtrail.transactions and, when it finds nothing, the actor and the INSERT.
REGISTRATION = r"\n    IF NOT EXISTS \(SELECT 1 FROM simtrail\.transactions .*?\n    END IF;"
# What the registration does once the probe has found nothing.
REGISTER_BODY = (
    r"(IF NOT EXISTS \(SELECT 1 FROM simtrail\.transactions [^\n]*THEN\n).*?(\n    END IF;)"
)
# Everything from the TG_OP dispatch to the RETURN: the INSERT into the log.
LOG_INSERT = r"\n    IF TG_OP = 'INSERT' THEN.*END IF;(?=\s*RETURN NULL;)"
XACT_ROW = r"\n\s*INSERT INTO simtrail\.transactions .*?v_actor\);"
# Parsing the claims, building the actor and capping it.
ACTOR = r"BEGIN\n\s*v_actor := .*?simtrail\.cap_actor\(v_actor\);\n\s*END IF;"
WINDOW = r"pg_catalog\.row_number\(\) OVER \(\)"
# The tenant lock: a one-time filter on each INSERT into the log (capture.sql,
# render_tenant_hold).
TENANT_LOCK = (
    r"\(\(SELECT pg_catalog\.count\(\*\) FROM \(SELECT DISTINCT t\.tenant .*?"
    r"simtrail\.add_tenant_locks\(ARRAY\(.*?IS NOT NULL\)\)\)\)"
)
IMAGES = (
    r"pg_catalog\.to_jsonb\(r\.\*\) AS img, "
    r"pg_catalog\.jsonb_build_object\((?:[^()]|\([^()]*\))*\) AS pk"
)


def _rewrite(*edits: tuple[str, str]) -> Change:
    """A change that rewrites the generated capture function."""

    def change(conn: Conn, installed: Installed) -> None:
        text = installed.definition
        for pattern, replacement in edits:
            text = _edit(text, pattern, replacement, "capture")
        conn.execute(text.encode())

    return change


def _sql(name: str) -> Change:
    def change(conn: Conn, installed: Installed) -> None:
        conn.execute(q(name).format(function=installed.ident))

    return change


def _drop_log_indexes(conn: Conn, installed: Installed) -> None:
    if not installed.indexes:
        raise NotApplicable("simtrail.changes has no secondary index")
    for name, _ in installed.indexes:
        conn.execute(q("drop_index").format(index=sql.Identifier("simtrail", name)))


VARIANTS = (
    Variant("none", "none", "no trigger"),
    Variant("naive", "naive", "naive row trigger"),
    Variant("simtrail", "simtrail", "simtrail as installed"),
    # The ladder: each step adds one part of the generated function.
    Variant(
        "empty",
        "simtrail",
        "1. empty capture function (trigger and transition tables only)",
        _sql("empty_body"),
        group="ladder",
    ),
    Variant(
        "prologue",
        "simtrail",
        "2. + SECURITY DEFINER, search_path, xid check",
        _rewrite((LOG_INSERT, ""), (REGISTER_BODY, r"\1        NULL;\2")),
        group="ladder",
    ),
    Variant(
        "register",
        "simtrail",
        "3. + registration (actor, row in simtrail.transactions)",
        _rewrite((LOG_INSERT, "")),
        group="ladder",
    ),
    # Step 4 is simtrail as installed: + the INSERT into simtrail.changes.
    Variant(
        "invoker",
        "simtrail",
        "capture function SECURITY INVOKER, no SET search_path",
        _sql("invoker"),
        group="removal",
    ),
    Variant(
        "no_begin",
        "simtrail",
        "no registration (neither probe nor row)",
        _rewrite((REGISTRATION, "")),
        group="removal",
    ),
    Variant(
        "no_xact_row",
        "simtrail",
        "registration without its INSERT into simtrail.transactions",
        _rewrite((XACT_ROW, "")),
        group="removal",
    ),
    Variant(
        "no_actor",
        "simtrail",
        "registration storing an empty actor",
        _rewrite((ACTOR, "v_actor := '{}'::jsonb;")),
        group="removal",
    ),
    Variant(
        "no_tenant_lock",
        "simtrail",
        "no tenant lock (row lock FOR KEY SHARE, once per statement)",
        _rewrite((TENANT_LOCK, "true")),
        group="removal",
    ),
    Variant(
        "no_indexes",
        "simtrail",
        "no secondary indexes on simtrail.changes",
        _drop_log_indexes,
        group="removal",
    ),
    Variant(
        "no_window",
        "simtrail",
        "no row_number() window (rn := 1)",
        _rewrite((WINDOW, "1::bigint")),
        group="removal",
        # Pairing old and new rows by a constant is only right for one row.
        skip=frozenset({"bulk UPDATE"}),
    ),
    Variant(
        "no_json",
        "simtrail",
        "no jsonb images (img and pk not built)",
        # No quotes: the TRUNCATE branch carries this text inside a literal.
        _rewrite((IMAGES, "NULL::jsonb AS img, pg_catalog.jsonb_build_object() AS pk")),
        group="removal",
    ),
    Variant(
        "no_jit",
        "simtrail",
        "capture function with SET jit = off",
        _sql("no_jit"),
        group="removal",
    ),
)


@dataclass
class Anatomy:
    ops: int
    bulk_rows: int
    repeats: int
    bulk_repeats: int
    # kind -> variant key -> operation -> one value per repeat. Kinds as in
    # bench.capture, but "single" is wall µs per op here, not ops/s.
    values: dict[str, dict[str, dict[str, list[float]]]] = field(
        default_factory=lambda: {kind: {} for kind in KINDS}
    )
    unavailable: dict[str, str] = field(default_factory=dict)
    cpu: bool = False
    seconds: float = 0.0

    def record(self, kind: str, variant: str, op: str, value: float) -> None:
        self.values[kind].setdefault(variant, {}).setdefault(op, []).append(value)


def installed(conn: Conn) -> Installed:
    row = conn.execute(q("capture_function")).fetchone()
    if row is None:
        raise RuntimeError("simtrail does not capture public.patient_vitals")
    definition = conn.execute(q("function_definition"), {"oid": row["oid"]}).fetchone()
    assert definition is not None
    indexes = tuple((r["name"], r["definition"]) for r in conn.execute(q("log_indexes")))
    return Installed(row["name"], definition["definition"], indexes)


def restore(conn: Conn, original: Installed) -> None:
    """Put the generated function and the log's indexes back as the installer left them."""
    conn.execute(original.definition.encode())
    now = {r["name"]: r["definition"] for r in conn.execute(q("log_indexes"))}
    for name, definition in original.indexes:
        if now.get(name) != definition:
            if name in now:
                conn.execute(q("drop_index").format(index=sql.Identifier("simtrail", name)))
            conn.execute(definition.encode())


WARM_OPS = 20


@dataclass
class _Run:
    targets: dict[str, Target]
    result: Anatomy
    original: Installed
    roster: Sequence[tuple[uuid.UUID, uuid.UUID]]
    clients: dict[str, psycopg.Connection[Any]]
    settle: Settler = field(default_factory=Settler)
    rng: random.Random = field(default_factory=lambda: seeded(SEED + 2))

    def round(self, variant: Variant, *, single: bool, bulk: bool, keep: bool) -> None:
        """Apply the variant, measure, undo it."""
        target = self.targets[variant.config]
        admin = target.admin
        try:
            if variant.change is not None:
                variant.change(admin, self.original)
            for table in LOG_TABLES[variant.config]:
                admin.execute(q("truncate").format(table=ident(table)))
            if single:
                self._single(variant, target, keep=keep)
            if bulk:
                self._bulk(variant, target, keep=keep)
        except (NotApplicable, psycopg.errors.SyntaxError) as exc:
            self.result.unavailable[variant.key] = str(exc).splitlines()[0]
        finally:
            if variant.change is not None:
                restore(admin, self.original)

    def _single(self, variant: Variant, target: Target, *, keep: bool) -> None:
        conn = self.clients[variant.config]
        meter = CpuMeter([conn])
        # A few untimed statements first: a changed function is compiled and
        # planned on its first calls, which is not what is being measured.
        warm = single_work(self.rng, Plan(1, 1, WARM_OPS, 0), self.roster)
        for op in OPS:
            run_clients([conn], query("capture.sql", f"{op.lower()}_one"), warm[op])
        self.settle(target)
        work = single_work(self.rng, Plan(1, 1, self.result.ops, 0), self.roster)
        for op in OPS:
            cpu = meter.read()
            start = time.perf_counter()
            run_clients([conn], query("capture.sql", f"{op.lower()}_one"), work[op])
            wall = time.perf_counter() - start
            cpu = meter.read() - cpu
            if keep:
                self.result.record("single", variant.key, op, wall / self.result.ops * 1e6)
                if meter.available:
                    self.result.record("single_cpu", variant.key, op, cpu / self.result.ops / 1e3)

    def _bulk(self, variant: Variant, target: Target, *, keep: bool) -> None:
        conn = self.clients[variant.config]
        meter = CpuMeter([conn])
        for op in OPS:
            if f"bulk {op}" in variant.skip:
                continue
            self.settle(target)
            cpu = meter.read()
            value = run_bulk(conn, target.config, op, self.result.bulk_rows)
            cpu = meter.read() - cpu
            if keep:
                self.result.record("bulk", variant.key, op, value)
                if meter.available:
                    self.result.record("bulk_cpu", variant.key, op, cpu / 1e9)


def measure(
    targets: dict[str, Target],
    roster: Sequence[tuple[uuid.UUID, uuid.UUID]],
    *,
    ops: int,
    bulk_rows: int,
    repeats: int,
    bulk_repeats: int,
    say: Say,
) -> Anatomy:
    """Every variant `repeats` times on single rows and `bulk_repeats` times in bulk.

    Each repeat visits the variants in a fresh order, after one unrecorded
    round that warms every variant up.
    """
    result = Anatomy(ops, bulk_rows, repeats, bulk_repeats)
    started = time.perf_counter()
    clients: dict[str, psycopg.Connection[Any]] = {}
    try:
        for config in CONFIGS:
            conn = psycopg.connect(
                targets[config].dsn,
                autocommit=True,
                application_name=f"simtrail bench anatomy {config}",
            )
            clients[config] = conn
            conn.execute(q("async_commit"))
            conn.execute(query("capture.sql", "set_claims"), {"claims": CLAIMS})
        run = _Run(targets, result, installed(targets["simtrail"].admin), roster, clients)
        for variant in VARIANTS:
            run.round(variant, single=True, bulk=False, keep=False)
        rounds = max(repeats, bulk_repeats)
        for repeat in range(rounds):
            order = list(VARIANTS)
            seeded(SEED + repeat).shuffle(order)
            for variant in order:
                if variant.key not in result.unavailable:
                    run.round(
                        variant, single=repeat < repeats, bulk=repeat < bulk_repeats, keep=True
                    )
            say(f"anatomy: repeat {repeat + 1}/{rounds} done")
        result.cpu = all(CpuMeter([c]).available for c in clients.values())
    finally:
        for conn in clients.values():
            conn.close()
    result.seconds = time.perf_counter() - started
    return result


__all__ = ["VARIANTS", "Anatomy", "Variant", "measure"]
