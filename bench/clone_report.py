"""The Clone section of BENCHMARKS.md, and the job that measures it."""

from __future__ import annotations

import argparse
import json
import time

from bench import clone_measure, clone_profile, machine, server
from bench.clone import Plan
from bench.clone_measure import SizeResult
from bench.clone_targets import cell, rate, ratio, targets
from bench.report import DASH, X, median, spread

FULL = Plan(patients=(65, 660, 3_300), repeats=5)
QUICK = Plan(patients=(20,), repeats=1)

LABELS = {
    "simtrail": "simtrail",
    "user": "(a) user's",
    "user_captured": "(a) captured",
    "user_as_written": "(a) as written",
    "floor": "(b) floor",
    "floor_replica": "(b) replica",
    "floor_bare": "(b) bare",
}


def job(args: argparse.Namespace) -> str:
    """`python -m bench --only clone`: measure and render the section."""
    plan = server.chosen_plan(args, FULL, QUICK)
    started = time.perf_counter()
    with server.server(args.dsn, args.datadir) as srv, server.Scratch(srv.admin_dsn) as scratch:
        facts = machine.collect(srv.description)
        server.say(f"bench: clone on {srv.description}")
        results = clone_measure.run(scratch.create, plan, server.say, facts)
    facts.load_after = machine.load()
    return render(results, plan, facts, quick=args.quick, seconds=time.perf_counter() - started)


def render(
    results: list[SizeResult], plan: Plan, facts: machine.Machine, *, quick: bool, seconds: float
) -> str:
    out = ["## Clone", ""]
    if quick:
        out += [
            "> **Quick smoke run** (`--quick`): one small class and one repeat; not a",
            "> measurement. Run `python -m bench --only clone` for numbers worth quoting.",
            "",
        ]
    profiled = [(r.total, median(r.seconds["simtrail"]), r.profile) for r in results if r.profile]
    out += [
        f"Measured {facts.date} on {facts.cores} cores ({facts.cpu_model}), PostgreSQL "
        f"{facts.postgres}; details under *Machine*.",
        "",
        "A template class copied into a new, empty class. Templates: the clinic fixture's "
        "seed (`simtrail.clinic.seed.seed_tenants`), fully charted patients with rows in "
        "every configured table (vitals, medications and their administrations, notes, lab "
        "panels and their results, doctors' orders with supersedes chains, handover notes, "
        "wounds and their assessments, care teams, bowel and glucose records); "
        f"{plan.patients[0]} patients are about the user's class of 1,950 rows. Each "
        f"database also holds {plan.other_classes} other classes of {plan.other_patients} "
        "patients. Every repeat is one transaction that creates the app's `tenants` row of "
        "a new class, clones into it, checks that every table got exactly the template's "
        "row count, and rolls back; a `VACUUM` and a `CHECKPOINT` follow, untimed. So each "
        "repeat clones into a fresh, empty class from the same state. Medians of up to "
        f"{plan.repeats} repeats, the methods interleaved in an order that rotates between "
        "repeats, after one warm-up of each (see *Method* for the slow ones).",
        "",
        "- **simtrail**: `simtrail.clone_tenant(template, new)`: new keys, every reference "
        "remapped, its checks, the key map kept, the `launch` mark, capture of the copy;",
        "- **(a) user's**: the user's approach (issue #9), `bench/sql/clone_baselines.sql`: a "
        'snapshot `{"<table>": [full rows…]}` saved from the template (untimed), restored '
        "table by table in the document's key order, each row inserted with dynamic SQL "
        "(`jsonb_populate_record`) in its own `BEGIN … EXCEPTION` block, new uuids from a "
        "jsonb id map, any `*_id` value found in the map replaced, by column name. The "
        "foreign keys and the app's triggers fire; no capture (the user's database today). "
        "Kinder to (a) than the user's code: the column list and statement are built once "
        "per table (theirs reads `information_schema` for every row) and the id map grows "
        "once per table (theirs by `||` per row, quadratic);",
        "- **(a) captured**: the same function with simtrail's capture on: every row's INSERT "
        "is a captured statement;",
        "- **(a) as written**: the same function as the user wrote it: per row, the insert "
        "and select lists and the tenant column looked up in `information_schema`, and the "
        "id map grown by `||`; at the user's class size only, to tie the reproduction to the "
        "5 s the user reported for 1,950 rows;",
        "- **(b) floor**: one `INSERT … SELECT` per table, parents first, joining key tables "
        "(old key → new key, every generated value) computed before the clock starts. All "
        "the table's own triggers fire: foreign-key checks, the app's triggers and "
        "**simtrail's capture (on)**;",
        "- **(b) replica**: the same in replica mode: capture (its triggers are `ENABLE "
        "ALWAYS`) but no foreign-key checks and no app triggers, the trigger set simtrail's "
        "clone runs with;",
        "- **(b) bare**: replica mode, capture off: nothing but the rows.",
        "",
        *_results(results, plan),
        *targets(results, plan.max_seconds),
        *clone_profile.render([(n, s, p) for n, s, p in profiled if p is not None]),
        *_tables(results),
        *_machine(facts, results),
        "### Method",
        "",
        "- One scratch database per size (clinic schema and config, the template and the "
        "other classes seeded, then `simtrail install` and the fixture's declared references "
        "and copy rules (`core/clinic/copy_config.sql`: five references without FK; a new "
        "wristband per patient, which (a) makes as the user does, at random, checked in the "
        "target class only, and (b) precomputes), then the baselines' functions), "
        "dropped at the end.",
        "- Each method's row counts per table are compared with the template's after every "
        "run (untimed); a run of simtrail or of a floor that copies a different number of "
        "rows stops the benchmark. A run of (a) that loses rows (its random wristband "
        "collided with another class's, the bug issue #9 describes) or reports a failed "
        "row is kept as measured and listed under the table as that baseline's failure.",
        f"- A method whose run is expected (extrapolated from its times at the smaller sizes, "
        f"never below linear) or found to take more than {plan.slow_seconds:.0f} s gets no "
        f"warm-up; one expected to take more than {plan.max_seconds:.0f} s does not run (*not "
        f"run*), and a run is cancelled at {plan.max_seconds:.0f} s (*> "
        f"{plan.max_seconds:.0f}*); a method's repeats at one size stop once they add up to "
        f"{plan.budget_seconds:.0f} s (*Every repeat* gives the count). So the whole "
        "benchmark takes minutes, whatever one method's cost grows to.",
        "- Ratios are medians of per-repeat ratios where both ran every repeat, else ratios "
        "of medians; against a cancelled run they are bounds.",
        "- Times are wall-clock around the one statement (for (b), the one batch of "
        "statements) that copies, from the client; backend CPU time beside it.",
        f"- Whole run {seconds:,.0f} s.",
        "",
        "### Reproduce",
        "",
        "```sh",
        "python -m bench --only clone            # full run, rewrites this section",
        "python -m bench --only clone --quick    # smoke run, prints the section",
        "```",
    ]
    return "\n".join(out)


def _results(results: list[SizeResult], plan: Plan) -> list[str]:
    keys = list(LABELS)
    cap = plan.max_seconds
    out = [
        "### Results",
        "",
        f"Seconds (median; min{DASH}max under *Every repeat*) and rows copied per second.",
        "",
        "| template rows | patients | "
        + " | ".join(f"{LABELS[k]} s" for k in keys)
        + " | (a)/simtrail | (a) captured/simtrail | (a) as written/simtrail | simtrail/(b)"
        " | simtrail/(b) replica |",
        "|---:|---:|" + "---:|" * (len(keys) + 5),
    ]
    for r in results:
        out.append(
            f"| {r.total:,} | {r.patients:,} | "
            + " | ".join(cell(r, k, cap) for k in keys)
            + f" | {ratio(r, 'user', 'simtrail', cap).show('.1f', X)}"
            f" | {ratio(r, 'user_captured', 'simtrail', cap).show('.1f', X)}"
            f" | {ratio(r, 'user_as_written', 'simtrail', cap).show('.1f', X)}"
            f" | {ratio(r, 'simtrail', 'floor', cap).show('.2f', X)}"
            f" | {ratio(r, 'simtrail', 'floor_replica', cap).show('.2f', X)} |"
        )
    notes = [
        f"- {LABELS[k]} at {r.total:,} rows: not run, about {s:,.0f} s expected."
        for r in results
        for k, s in r.skipped.items()
    ]
    limited = sorted({k for r in results for k in r.limited}, key=keys.index)
    notes += [f"- {LABELS[k]}: run at the user's class size only." for k in limited]
    notes += [
        f"- {LABELS[k]} at {r.total:,} rows: {len(v)} run(s) made no correct copy;"
        f" the first {v[0]}. Its time is shown as measured, for a copy it did not"
        " complete."
        for r in results
        for k, v in r.shortfalls.items()
    ]
    out += ["", *notes, *([""] if notes else [])]
    out += [
        "| template rows | " + " | ".join(f"{LABELS[k]} rows/s" for k in keys) + " |",
        "|---:|" + "---:|" * len(keys),
    ]
    for r in results:
        out.append(
            f"| {r.total:,} | " + " | ".join(rate(r, k, cap).show(",.0f") for k in keys) + " |"
        )
    if any(r.cpu[k] for r in results for k in keys):
        out += [
            "",
            "Backend CPU seconds (median): the time the server process ran, from "
            "`/proc/<pid>/schedstat`, which a neighbour's load on this shared machine moves "
            "far less than wall-clock time; waits for I/O and locks are not in it.",
            "",
            "| template rows | " + " | ".join(f"{LABELS[k]} CPU s" for k in keys) + " |",
            "|---:|" + "---:|" * len(keys),
        ]
        for r in results:
            out.append(
                f"| {r.total:,} | "
                + " | ".join(f"{median(r.cpu[k]):.3f}" if r.cpu[k] else DASH for k in keys)
                + " |"
            )
    out += [
        "",
        f"<details><summary>Every repeat (min{DASH}max s, number of repeats)</summary>",
        "",
        f"| template rows | method | min{DASH}max s | repeats |",
        "|---:|---|---:|---:|",
    ]
    for r in results:
        for k in keys:
            values = r.seconds[k]
            out.append(f"| {r.total:,} | {LABELS[k]} | {spread(values, '.3f')} | {len(values)} |")
    return [*out, "", "</details>", ""]


def _tables(results: list[SizeResult]) -> list[str]:
    if not results:
        return []
    tables = sorted({t for r in results for t in r.rows})
    out = [
        "<details><summary>Template rows per table, snapshot sizes, simtrail's report</summary>",
        "",
        "| table | " + " | ".join(f"{r.total:,}-row template" for r in results) + " |",
        "|---|" + "---:|" * len(results),
    ]
    for t in tables:
        out.append(f"| `{t}` | " + " | ".join(f"{r.rows.get(t, 0):,}" for r in results) + " |")
    out += [
        "| rows in the whole database | "
        + " | ".join(f"{r.database_rows:,}" for r in results)
        + " |",
        "| (a)'s snapshot document | "
        + " | ".join(f"{r.snapshot_bytes / 1024**2:,.1f} MiB" for r in results)
        + " |",
        "",
    ]
    first = results[0].report
    if first is not None:
        out += [
            f"simtrail's report of its first clone of the {results[0].total:,}-row template:",
            "",
            "```json",
            json.dumps(first, indent=1, sort_keys=True, default=str)[:4000],
            "```",
            "",
        ]
    return [*out, "</details>", ""]


def _machine(facts: machine.Machine, results: list[SizeResult]) -> list[str]:
    checkpoints = all(r.checkpoints for r in results)
    return machine.section(
        facts, f"- CHECKPOINT after every run: {'yes' if checkpoints else 'no (not permitted)'}"
    )
