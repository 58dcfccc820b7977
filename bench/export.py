"""The Export and verify section of BENCHMARKS.md (issue 11): export and verify
rates, and the export's peak memory as the history grows.

The history is charted vitals (ten-column images) through the real capture
triggers, sealed, then exported to JSONL and verified at each size, each run
in a fresh child process (bench/export_child.py) so each run's peak RSS is
its own. One more export and verify of the smallest size run under cProfile
for the section's profile. `python -m bench --only export` writes the
section; `python -m bench.export` prints it.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import machine
from bench.report import X, median
from bench.seal import stalled
from bench.server import Scratch, chosen_plan, say, server
from bench.sql import query
from simtrail.clinic import seed
from simtrail.db import connect
from simtrail.errors import SimtrailError
from simtrail.triggers import installer

EXPORT_TARGET = 100_000  # changes/s to JSONL
VERIFY_TARGET = 200_000  # lines/s
# Peak memory counts as flat when the largest history's peak is at most this
# many times the smallest's (the interpreter and its imports are most of it).
FLAT = 1.25
CHUNK = 50_000
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Plan:
    sizes: tuple[int, ...]
    repeats: int


FULL = Plan(sizes=(100_000, 300_000, 1_000_000), repeats=3)
QUICK = Plan(sizes=(5_000, 10_000), repeats=1)


@dataclass
class Run:
    seconds: float
    lines: int
    # The process's peak, plus its largest worker's (verify's, on a large file).
    rss_mb: float
    worker_mb: float = 0.0

    @property
    def rate(self) -> float:
        return self.lines / self.seconds


@dataclass
class Size:
    changes: int
    file_mb: float
    exports: list[Run] = field(default_factory=list)
    verifies: list[Run] = field(default_factory=list)


@dataclass
class Results:
    sizes: list[Size]
    export_top: list[dict[str, Any]]
    verify_top: list[dict[str, Any]]
    profiled: int


def _child(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.export_child", *args],
        capture_output=True, text=True, check=False, cwd=REPO,
    )
    if done.returncode != 0:
        raise SimtrailError(done.stderr.strip().splitlines()[-1] if done.stderr else "failed")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _run(result: dict[str, Any]) -> Run:
    workers = result.get("worker_rss_kb", 0) / 1024
    return Run(result["seconds"], result["lines"], result["rss_kb"] / 1024 + workers, workers)


def _grow(dsn: str, rows: int) -> None:
    """Chart `rows` vitals through the capture triggers and seal them."""
    with connect(dsn, "bench export history", statement_timeout_ms=0) as conn:
        left = rows
        while left > 0:
            conn.execute(query("export.sql", "vitals_history"), {"rows": min(CHUNK, left)})
            left -= CHUNK
        while True:
            row = conn.execute(query("export.sql", "seal_batch"), {"limit": 50_000}).fetchone()
            assert row is not None
            if row["r"]["done"]:
                return


def _sealed(dsn: str) -> int:
    with connect(dsn, "bench export") as conn:
        row = conn.execute(query("export.sql", "sealed")).fetchone()
    return int(row["n"]) if row else 0


def run(dsn: str, plan: Plan, workdir: Path) -> Results:
    with connect(dsn, "bench export setup", statement_timeout_ms=0) as conn:
        seed.apply_schema(conn)
        installer.install(conn)
        seed.seed_tenants(conn, tenants=6, patients_per_tenant=8, rng=random.Random(11))
    _grow(dsn, 0)  # the seed's own changes count towards the first size
    sizes: list[Size] = []
    tops: dict[str, list[dict[str, Any]]] = {}
    for size in sorted(plan.sizes):
        say(f"bench: export, growing the history to {size:,} changes")
        _grow(dsn, max(size - _sealed(dsn), 0))
        if _sealed(dsn) < size:
            raise SimtrailError(stalled(_sealed(dsn), size))
        out = workdir / f"export_{size}"
        measured: Size | None = None
        for repeat in range(plan.repeats):
            say(f"bench: export and verify {size:,}, repeat {repeat + 1} of {plan.repeats}")
            shutil.rmtree(out, ignore_errors=True)
            exported = _run(_child("export", dsn, str(out)))
            if measured is None:
                measured = Size(exported.lines, (out / "changes.jsonl").stat().st_size / 1e6)
            measured.exports.append(exported)
            measured.verifies.append(_run(_child("verify", str(out))))
        assert measured is not None
        sizes.append(measured)
        if not tops:
            say(f"bench: export and verify {size:,} under cProfile")
            shutil.rmtree(out, ignore_errors=True)
            tops["export"] = _child("export", dsn, str(out), "--profile")["top"]
            tops["verify"] = _child("verify", str(out), "--profile")["top"]
        shutil.rmtree(out, ignore_errors=True)
    return Results(sizes, tops["export"], tops["verify"], sizes[0].changes)


def job(args: argparse.Namespace) -> str:
    """`python -m bench --only export`: measure and render the section."""
    plan = chosen_plan(args, FULL, QUICK)
    with (
        tempfile.TemporaryDirectory(prefix="simtrail-bench-export-") as tmp,
        server(args.dsn, args.datadir) as srv,
        Scratch(srv.admin_dsn) as scratch,
    ):
        facts = machine.collect(srv.description)
        say(f"bench: export on {srv.description}")
        with connect(srv.admin_dsn, "bench export") as conn:
            machine.add_server_facts(facts, conn)
        results = run(scratch.create("export"), plan, Path(tmp))
    facts.load_after = machine.load()
    return section(results, srv.description, facts)


def _verdict(rate: float, target: int) -> str:
    return "yes" if rate >= target else f"**no**, {target / rate:.1f}{X} short"


def _profile(top: list[dict[str, Any]]) -> list[str]:
    return [
        "| function | calls | own time | with callees |",
        "|---|---:|---:|---:|",
        *(
            f"| `{t['function']}` | {t['calls']:,} | {t['own_share']:.0%} |"
            f" {t['cumulative_share']:.0%} |"
            for t in top
        ),
    ]


def section(results: Results, where: str, facts: machine.Machine | None = None) -> str:
    rows = []
    for s in results.sizes:
        export_rate = median([r.rate for r in s.exports])
        verify_rate = median([r.rate for r in s.verifies])
        rows.append(
            f"| {s.changes:,} | {export_rate:,.0f} | {_verdict(export_rate, EXPORT_TARGET)} |"
            f" {max(r.rss_mb for r in s.exports):.0f} | {verify_rate:,.0f} |"
            f" {_verdict(verify_rate, VERIFY_TARGET)} | {max(r.rss_mb for r in s.verifies):.0f} |"
            f" {s.file_mb:,.0f} |"
        )
    first, last = results.sizes[0], results.sizes[-1]
    growth = {
        "export": max(r.rss_mb for r in last.exports) / max(r.rss_mb for r in first.exports),
        "verify": max(r.rss_mb for r in last.verifies) / max(r.rss_mb for r in first.verifies),
    }
    flat = all(g <= FLAT for g in growth.values())
    repeats = len(first.exports)
    workers = max(r.worker_mb for s in results.sizes for r in s.verifies)
    return "\n".join(
        [
            "## Export and verify",
            "",
            f"Charted vitals (ten-column images, through the capture triggers) on the {where},"
            " sealed, then exported to JSONL (`simtrail export`) and verified offline"
            " (`simtrail verify DIR`) at each size, each run in a fresh process. Rates are"
            f" medians of {repeats} run(s); peak RSS is the largest of them. Targets"
            f" (issue 11): export at least {EXPORT_TARGET:,} changes/s, verify at least"
            f" {VERIFY_TARGET:,} lines/s, peak memory flat as the history grows.",
            "",
            "| changes | export changes/s | met | export peak RSS MiB | verify lines/s | met |"
            " verify peak RSS MiB | changes.jsonl MB |",
            "|---:|---:|---|---:|---:|---|---:|---:|",
            *rows,
            "",
            f"Peak memory from {first.changes:,} to {last.changes:,} changes: export"
            f" {growth['export']:.2f}{X}, verify {growth['verify']:.2f}{X}"
            f" ({'flat' if flat else 'not flat'}: the bound is {FLAT}{X}). Both stream: the"
            " export streams one snapshot's rows, a batch at a time, and writes line by"
            " line, and verify reads a line at a time."
            + (
                f" Verify's peak counts its process and its largest worker ({workers:.0f} MiB):"
                " past 16 MiB of JSONL it hashes chunks of about 4 MiB on every core, and"
                " links them in file order."
                if workers
                else ""
            ),
            "",
            "Where the time goes. The export is one Python process; it recomputes each"
            " change's canonical text and chain hash to check it against its seal: per"
            " image column a salt and a commitment (one sha256 each) and the value's"
            " jsonb text. Verify does the same per line, less the salts, on every core for a"
            " large file (profiled below in one process, where cProfile sees that work). The"
            " cProfile of"
            f" one export and one verify of {results.profiled:,} changes, by time spent in"
            " each function itself (cProfile's own overhead inflates the many small"
            " calls):",
            "",
            "Export:",
            "",
            *_profile(results.export_top),
            "",
            "Verify:",
            "",
            *_profile(results.verify_top),
            "",
            *(machine.section(facts) if facts is not None else []),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.export", description=__doc__)
    parser.add_argument("--dsn", help="admin DSN (needs CREATEDB); default as python -m bench")
    parser.add_argument("--sizes", default="100000,300000,1000000",
                        help="history sizes, comma-separated")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--datadir", type=Path,
                        default=REPO / ".simtrail" / "bench-pg")
    args = parser.parse_args(argv)
    plan = Plan(tuple(int(s) for s in args.sizes.split(",")), args.repeats)
    with (
        tempfile.TemporaryDirectory(prefix="simtrail-bench-export-") as tmp,
        server(args.dsn, args.datadir) as srv,
        Scratch(srv.admin_dsn) as scratch,
    ):
        results = run(scratch.create("export"), plan, Path(tmp))
    print(section(results, srv.description))


if __name__ == "__main__":
    main()
