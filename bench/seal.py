"""The Sealing section of BENCHMARKS.md: how fast changes are sealed into
their chains, and where a seal's time goes.

Each repeat writes N original changes (50 tenants, eight-column images,
transactions of the log's real shape) straight into a fresh install's log,
then times `simtrail.seal_batch` batch by batch until all are sealed, then
the encoding alone and `verify --db`'s recomputation. `python -m bench
--only seal` writes the section; `python -m bench.seal` prints it.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import psycopg

from bench import machine
from bench.report import median
from bench.server import Scratch, chosen_plan, say, server
from bench.sql import query
from simtrail.db import connect
from simtrail.errors import SimtrailError
from simtrail.triggers import installer

TARGET = 100_000  # changes/s, issue 11
DATADIR = Path(__file__).resolve().parent.parent / ".simtrail" / "bench-pg"


@dataclass(frozen=True)
class Plan:
    changes: int
    batch: int
    repeats: int


FULL = Plan(changes=200_000, batch=50_000, repeats=3)
QUICK = Plan(changes=10_000, batch=5_000, repeats=1)


@dataclass
class Result:
    changes: int
    batch: int
    seal_seconds: float
    batches: int
    canon_seconds: float
    commit_seconds: float
    hash_seconds: float
    verify_seconds: float
    sha256_us: float
    columns: float

    @property
    def rate(self) -> float:
        return self.changes / self.seal_seconds


def measure(dsn: str, changes: int, batch: int) -> Result:
    with connect(dsn, "bench seal", statement_timeout_ms=0) as conn:
        installer.install(conn)
        # The first seal of an install sweeps the (empty) log; what follows
        # is the steady state: passes over finished transactions.
        conn.execute(query("seal.sql", "seal_batch"), {"limit": batch})
        say(f"writing {changes:,} changes")
        conn.execute(query("seal.sql", "history"), {"n": changes})
        conn.execute("VACUUM ANALYZE simtrail.changes")
        say("sealing")
        started = time.perf_counter()
        batches = 0
        while True:
            with conn.transaction():
                row = conn.execute(query("seal.sql", "seal_batch"), {"limit": batch}).fetchone()
            batches += 1
            if row is None or row["result"]["done"]:
                break
        sealed = time.perf_counter() - started
        count = conn.execute("SELECT count(*) AS n FROM simtrail.seals").fetchone()
        if count is None or count["n"] != changes:
            raise SimtrailError(stalled(count["n"] if count else 0, changes))
        canon = _timed(conn, "canon_only")
        commitments = _timed(conn, "commitments_only")
        hashing = _timed(conn, "hash_only")
        verifying = _timed(conn, "verify")
        sha256_us = _timed(conn, "sha256_calls") / 500_000 * 1e6
        row = conn.execute(query("seal.sql", "columns_per_change")).fetchone()
        columns = float(row["columns"]) if row else 0.0
    return Result(
        changes, batch, sealed, batches, canon, commitments, hashing, verifying, sha256_us, columns
    )


def run(create: Callable[[str], str], plan: Plan) -> list[Result]:
    """One fresh database a repeat, so each seals the same history from the same start."""
    results = []
    for repeat in range(plan.repeats):
        say(f"bench: seal, repeat {repeat + 1} of {plan.repeats}")
        results.append(measure(create(f"seal{repeat}"), plan.changes, plan.batch))
    return results


def medians(results: list[Result]) -> Result:
    """Each timing's median over the repeats (the counts are the same in each)."""
    first = results[0]
    values = {
        f.name: median([getattr(r, f.name) for r in results])
        for f in fields(Result)
        if isinstance(getattr(first, f.name), float)
    }
    return Result(changes=first.changes, batch=first.batch, batches=first.batches, **values)


def job(args: argparse.Namespace) -> str:
    """`python -m bench --only seal`: measure and render the section."""
    plan = chosen_plan(args, FULL, QUICK)
    with server(args.dsn, args.datadir) as srv, Scratch(srv.admin_dsn) as scratch:
        facts = machine.collect(srv.description)
        say(f"bench: seal on {srv.description}")
        with connect(srv.admin_dsn, "bench seal") as conn:
            machine.add_server_facts(facts, conn)
        results = run(scratch.create, plan)
    facts.load_after = machine.load()
    return section(results, srv.description, facts)


def stalled(sealed: object, written: int) -> str:
    return (
        f"sealed {sealed} of {written:,} changes: a transaction open elsewhere on this server"
        " holds the cluster's xmin back, and sealing waits for it; measure on a quiet server"
        " (--dsn embedded)"
    )


def _timed(conn: psycopg.Connection[dict[str, object]], name: str) -> float:
    started = time.perf_counter()
    cur = conn.execute(query("seal.sql", name))
    if cur.description is not None:
        cur.fetchall()
    return time.perf_counter() - started


def section(results: list[Result], where: str, facts: machine.Machine | None = None) -> str:
    result = medians(results)
    verdict = (
        "meets it" if result.rate >= TARGET else f"misses it by {TARGET / result.rate:.1f}\u00d7"
    )
    per = 1e6 / result.changes
    rates = ", ".join(f"{r.rate:,.0f}" for r in results)
    return "\n".join(
        [
            "## Sealing",
            "",
            f"{result.changes:,} original changes (50 tenants, eight-column images) written"
            f" straight into the log of a fresh install on the {where}, then sealed by"
            f" `simtrail.seal_batch({result.batch:,})` in {result.batches} transactions."
            f" Medians of {len(results)} repeat(s), each on a fresh database"
            f" (seal rates per repeat: {rates} changes/s).",
            "",
            "| what | seconds | changes/s | µs/change |",
            "|---|---:|---:|---:|",
            f"| seal (encode, hash, chain, write seals, heads, checkpoints) |"
            f" {result.seal_seconds:.2f} | {result.rate:,.0f} | {result.seal_seconds * per:.1f} |",
            f"| the encoding alone, rendered inline as the seal runs it |"
            f" {result.canon_seconds:.2f} | {result.changes / result.canon_seconds:,.0f} |"
            f" {result.canon_seconds * per:.1f} |",
            f"| the column commitments alone, rendered as the seal runs them |"
            f" {result.commit_seconds:.2f} | {result.changes / result.commit_seconds:,.0f} |"
            f" {result.commit_seconds * per:.1f} |",
            f"| one sha256 of encoding-sized text per change |"
            f" {result.hash_seconds:.2f} | {result.changes / result.hash_seconds:,.0f} |"
            f" {result.hash_seconds * per:.1f} |",
            f"| `verify --db` (recompute every chain) |"
            f" {result.verify_seconds:.2f} | {result.changes / result.verify_seconds:,.0f} |"
            f" {result.verify_seconds * per:.1f} |",
            "",
            f"Target: at least {TARGET:,} changes/s sealed; this run {verdict}"
            f" ({result.rate:,.0f}/s).",
            "",
            f"Where the time goes: the encoding commits to every image column with two"
            f" sha256() calls (its salt, then the salted value). These changes carry"
            f" {result.columns:.1f} columns on average, and one sha256() call on a short input"
            f" costs {result.sha256_us:.2f} µs here, so the hashes alone set a floor of"
            f" {(2 * result.columns + 1) * result.sha256_us:.1f} µs a change"
            f" ({1e6 / ((2 * result.columns + 1) * result.sha256_us):,.0f} changes/s) before"
            " any jsonb work.",
            "",
            *(machine.section(facts) if facts is not None else []),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.seal", description=__doc__)
    parser.add_argument("--dsn", help="admin DSN (needs CREATEDB); default as `python -m bench`")
    parser.add_argument("--changes", type=int, default=FULL.changes)
    parser.add_argument("--batch", type=int, default=FULL.batch)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--datadir", type=Path, default=DATADIR)
    args = parser.parse_args(argv)
    with server(args.dsn, args.datadir) as srv, Scratch(srv.admin_dsn) as scratch:
        results = run(scratch.create, Plan(args.changes, args.batch, args.repeats))
        print(section(results, srv.description))


if __name__ == "__main__":
    main()
