"""The clone benchmark's runs: every method at every size, within a time budget.

Per size: one warm-up of each method, then `repeats` interleaved rounds in an
order that rotates between rounds. A method whose run is expected (from its
times at the smaller sizes) or found to take more than `slow_seconds` gets no
warm-up (a found one's first run is its first measurement); one expected to
take more than `max_seconds` does not run, and a run past `max_seconds` is
cancelled; a method's repeats at a size stop once they add up to
`budget_seconds`. The whole benchmark so stays within minutes whatever one
method's cost grows to.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from bench import machine
from bench.clone import METHODS, SIMTRAIL, Method, Plan, Prepared, Settler, prepare, q, run_once
from bench.clone_profile import Profile, profile
from bench.cpu import CpuMeter
from bench.report import median
from simtrail.db import connect
from simtrail.errors import SimtrailError


@dataclass
class SizeResult:
    patients: int
    rows: dict[str, int]
    snapshot_bytes: int
    database_rows: int
    seconds: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)  # backend on-CPU seconds
    cancelled: set[str] = field(default_factory=set)  # a run passed max_seconds
    skipped: dict[str, float] = field(default_factory=dict)  # not run: the seconds expected
    limited: set[str] = field(default_factory=set)  # not run: past the method's max_rows
    # The user's restore, run by run: what it failed to copy while reporting success.
    shortfalls: dict[str, list[str]] = field(default_factory=dict)
    report: Any = None  # simtrail's report of its first clone
    profile: Profile | None = None
    checkpoints: bool = True

    @property
    def total(self) -> int:
        return sum(self.rows.values())


History = dict[str, list[tuple[int, float]]]  # method → (rows, median seconds) per size


def expected(history: list[tuple[int, float]], rows: int) -> float | None:
    """Seconds a run of `rows` rows should take, extrapolated from the smaller
    sizes: along the growth between the last two (never below linear), or
    linearly from one."""
    if not history:
        return None
    n2, t2 = history[-1]
    guess: float
    if len(history) == 1 or history[-2][1] <= 0 or history[-2][0] == n2:
        guess = t2 * rows / n2
    else:
        n1, t1 = history[-2]
        power = max(1.0, math.log(t2 / t1) / math.log(n2 / n1)) if t2 > t1 else 1.0
        guess = t2 * (rows / n2) ** power
    return guess


def measure(p: Prepared, plan: Plan, say: Callable[[str], None], history: History) -> SizeResult:
    result = SizeResult(p.patients, p.rows, p.snapshot_bytes, p.database_rows)
    with connect(p.dsn, "bench clone", statement_timeout_ms=0) as conn:
        settle = Settler(conn)
        meter = CpuMeter([conn])

        def attempt(method: Method, record: bool) -> float | None:
            try:
                seconds, cpu, report, shortfall = run_once(
                    conn, p, method, meter, plan.max_seconds
                )
            except psycopg.errors.QueryCanceled:
                result.cancelled.add(method.key)
                say(f"clone: {method.key} cancelled after {plan.max_seconds:.0f} s")
                return None
            finally:
                settle()
            if method is SIMTRAIL and result.report is None:
                result.report = report
            if shortfall is not None:
                result.shortfalls.setdefault(method.key, []).append(shortfall)
                say(f"clone: {method.key} {shortfall}")
            if record:
                result.seconds[method.key].append(seconds)
                if cpu is not None:
                    result.cpu[method.key].append(cpu)
            return seconds

        for method in METHODS:
            result.seconds[method.key], result.cpu[method.key] = [], []
            if method.max_rows is not None and p.total > method.max_rows:
                result.limited.add(method.key)
                continue
            guess = expected(history.get(method.key, []), p.total)
            if guess is not None and guess > plan.max_seconds:
                result.skipped[method.key] = guess
                continue
            if guess is not None and guess > plan.slow_seconds:
                continue  # a run this long needs no warm-up
            took = attempt(method, record=False)
            if took is not None and took > plan.slow_seconds:
                result.seconds[method.key].append(took)  # nor did this one
        for i in range(plan.repeats):
            order = METHODS[i % len(METHODS) :] + METHODS[: i % len(METHODS)]
            for method in order:
                k = method.key
                if k in result.skipped or k in result.cancelled or k in result.limited:
                    continue
                if sum(result.seconds[k]) >= plan.budget_seconds:
                    continue
                attempt(method, record=True)
            say(
                f"clone: {p.total:,} rows, round {i + 1}: "
                + ", ".join(f"{k} {v[-1]:.3f} s" for k, v in result.seconds.items() if v)
            )
        result.checkpoints = settle.checkpoints
    for k, values in result.seconds.items():
        if values:
            history.setdefault(k, []).append((p.total, median(values)))
    return result


def run(
    create_db: Callable[[str], str],
    plan: Plan,
    say: Callable[[str], None],
    facts: machine.Machine,
) -> list[SizeResult]:
    results: list[SizeResult] = []
    history: History = {}
    for patients in plan.patients:
        say(f"clone: preparing a template class of {patients:,} patients")
        started = time.perf_counter()
        prepared = prepare(create_db(f"clone_{patients}"), patients, plan)
        with connect(prepared.dsn, "bench clone") as conn:
            if not results:
                machine.add_server_facts(facts, conn)
            found = conn.execute(q("has_clone")).fetchone()
            if not (found and found["ok"]):
                raise SimtrailError("simtrail.clone_tenant(text, text, text, boolean) is missing")
        say(
            f"clone: {prepared.total:,} template rows, {prepared.database_rows:,} in the"
            f" database ({time.perf_counter() - started:.0f} s)"
        )
        result = measure(prepared, plan, say, history)
        results.append(result)
        clone_s = result.seconds["simtrail"]
        if clone_s and median(clone_s) * 2 <= plan.max_seconds:
            say(f"clone: profiling simtrail's clone of {prepared.total:,} rows")
            result.profile = profile(prepared, plan.max_seconds)
    return results
