"""``python -m bench``: run the benchmarks and write each one's section of BENCHMARKS.md."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from psycopg import Error as PsycopgError

from bench import (
    anatomy,
    capture,
    clone_report,
    compaction_report,
    export,
    machine,
    report,
    rewind,
    rewind_report,
    seal,
    server,
)
from simtrail.errors import SimtrailError

REPO = Path(__file__).resolve().parent.parent

FULL = capture.Plan(repeats=5, clients=4, ops_per_client=1500, bulk_rows=20_000)
QUICK = capture.Plan(repeats=1, clients=4, ops_per_client=100, bulk_rows=2_000)
# Rows of the bulk UPDATEs that test the plan cache; each doubling shows
# whether the time grows linearly or quadratically. Kept small: a quadratic
# plan at 20,000 rows would take minutes.
FULL_PLAN_CACHE = (500, 1_000, 2_000)
QUICK_PLAN_CACHE = (100, 200)
# The anatomy: single-row statements per operation and variant, repeats of
# those, and repeats of the bulk statements.
FULL_ANATOMY = {"ops": 200, "repeats": 15, "bulk_repeats": 5}
QUICK_ANATOMY = {"ops": 60, "repeats": 1, "bulk_repeats": 1}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure simtrail's capture cost against no trigger and the seed's "
        "naive trigger, side by side, and write the results into BENCHMARKS.md.",
    )
    parser.add_argument(
        "--dsn",
        help="admin DSN of the server to measure on (needs CREATEDB), or `embedded`. "
        "Default: $DATABASE_URL, else the local server at 127.0.0.1:5432 if it answers, "
        "else an embedded PostgreSQL.",
    )
    parser.add_argument(
        "--repeats", type=int, help=f"repeats of the comparison (default {FULL.repeats})"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run in under a minute; prints the section unless --output is given",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="markdown file whose capture section is (re)written "
        "(default: BENCHMARKS.md at the repository root; with --quick, standard output)",
    )
    parser.add_argument(
        "--only",
        choices=("capture", "rewind", "compaction", "clone", "seal", "export"),
        help="run one benchmark (default: capture, rewind, compaction, clone, seal, export)",
    )
    parser.add_argument(
        "--no-anatomy",
        action="store_true",
        help="skip the breakdown of where simtrail's time goes",
    )
    parser.add_argument(
        "--datadir",
        type=Path,
        default=REPO / ".simtrail" / "bench-pg",
        help="data directory for the embedded PostgreSQL (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> str:
    plan = QUICK if args.quick else FULL
    if args.repeats is not None:
        plan = capture.Plan(args.repeats, plan.clients, plan.ops_per_client, plan.bulk_rows)
    settings = QUICK_ANATOMY if args.quick else FULL_ANATOMY
    with server.server(args.dsn, args.datadir) as srv, server.Scratch(srv.admin_dsn) as scratch:
        facts = machine.collect(srv.description)
        say(f"bench: measuring on {srv.description}")
        targets: dict[str, capture.Target] = {}
        try:
            for config in capture.CONFIGS:
                say(f"bench: preparing {capture.LABELS[config]} ({scratch.name(config)})")
                targets[config] = capture.prepare(config, scratch.create(config), plan)
            machine.add_server_facts(facts, targets["none"].admin)
            results = capture.measure(targets, plan, say)
            capture.plan_cache(
                targets, results, QUICK_PLAN_CACHE if args.quick else FULL_PLAN_CACHE, say
            )
            parts = None
            if not args.no_anatomy:
                parts = anatomy.measure(
                    targets,
                    capture.patients(targets["none"]),
                    ops=settings["ops"],
                    bulk_rows=plan.bulk_rows,
                    repeats=settings["repeats"],
                    bulk_repeats=settings["bulk_repeats"],
                    say=say,
                )
        finally:
            for target in targets.values():
                target.close()
    facts.load_after = machine.load()
    return report.capture_section(results, parts, facts, quick=args.quick)


REWIND_FULL = rewind.Plan(
    sizes=(10_000, 100_000, 300_000),
    repeats=3,
    vitals_per_patient=500,
    other_log_rows=5_000_000,
    latency_seconds=10.0,
)
REWIND_QUICK = rewind.Plan(
    sizes=(5_000,), repeats=1, vitals_per_patient=50, other_log_rows=50_000, latency_seconds=2.0
)


def run_rewind(args: argparse.Namespace) -> str:
    plan = REWIND_QUICK if args.quick else REWIND_FULL
    if args.repeats is not None:
        plan = rewind.Plan(
            plan.sizes,
            args.repeats,
            plan.vitals_per_patient,
            plan.other_log_rows,
            plan.latency_seconds,
        )
    with server.server(args.dsn, args.datadir) as srv, server.Scratch(srv.admin_dsn) as scratch:
        say(f"bench: rewind on {srv.description}")
        results = rewind.run(scratch.create, plan, say)
    return rewind_report.render(results, plan)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    output = (
        args.output if args.output is not None else (None if args.quick else REPO / "BENCHMARKS.md")
    )
    for name, job in (
        ("capture", run),
        ("rewind", run_rewind),
        ("compaction", compaction_report.job),
        ("clone", clone_report.job),
        ("seal", seal.job),
        ("export", export.job),
    ):
        if args.only not in (None, name):
            continue
        try:
            section = job(args)
        except (SimtrailError, PsycopgError) as exc:
            say(f"bench: error: {exc}")
            return 2
        if output is None:
            print(section)
        else:
            report.write_section(output, name, section)
            say(f"bench: wrote the {name} section of {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
