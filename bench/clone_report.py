"""The Clone section of BENCHMARKS.md, and the job that measures it."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from typing import Any

from bench import clone, machine, server
from bench.clone import Plan, Profile, SizeResult
from bench.report import DASH, X, median, paired_ratio, spread

# Issue #9 item 10.
FASTER_THAN_USER = 20.0
FLOOR_FACTOR = 2.0
ROWS_PER_SECOND = 50_000

FULL = Plan(patients=(65, 660, 3_300), repeats=3)
QUICK = Plan(patients=(20,), repeats=1)

LABELS = {
    "simtrail": "simtrail",
    "user": "(a) user's",
    "user_captured": "(a) captured",
    "floor": "(b) floor",
    "floor_replica": "(b) replica",
    "floor_bare": "(b) bare",
}


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def job(args: argparse.Namespace) -> str:
    """`python -m bench --only clone`: measure and render the section."""
    plan = QUICK if args.quick else FULL
    if args.repeats is not None:
        plan = dataclasses.replace(plan, repeats=args.repeats)
    started = time.perf_counter()
    with server.server(args.dsn, args.datadir) as srv, server.Scratch(srv.admin_dsn) as scratch:
        facts = machine.collect(srv.description)
        say(f"bench: clone on {srv.description}")
        results = clone.run(scratch.create, plan, say, facts)
    facts.load_after = machine.load()
    return render(results, plan, facts, quick=args.quick, seconds=time.perf_counter() - started)


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _s(seconds: list[float]) -> str:
    return f"{median(seconds):.3f}" if seconds else DASH


def _rate(rows: int, seconds: list[float]) -> str:
    return f"{rows / median(seconds):,.0f}" if seconds else DASH


def _ratio(top: list[float], bottom: list[float]) -> float:
    """Paired per repeat where both ran every repeat, else a ratio of medians."""
    if not top or not bottom:
        return float("nan")
    if len(top) == len(bottom):
        return paired_ratio(top, bottom)
    return median(top) / median(bottom)


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
        "repeat clones into a fresh, empty class from the same state. Medians of "
        f"{plan.repeats} repeats, the methods interleaved in an order that rotates between "
        "repeats, after one warm-up of each.",
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
        "- **(b) floor**: one `INSERT … SELECT` per table, parents first, joining key tables "
        "(old key → new key, every generated value) computed before the clock starts. All "
        "the table's own triggers fire: foreign-key checks, the app's triggers and "
        "**simtrail's capture (on)**;",
        "- **(b) replica**: the same in replica mode: capture (its triggers are `ENABLE "
        "ALWAYS`) but no foreign-key checks and no app triggers, the trigger set simtrail's "
        "clone runs with;",
        "- **(b) bare**: replica mode, capture off: nothing but the rows.",
        "",
        *_results(results),
        *_targets(results),
        *_profile(results),
        *_tables(results),
        *_machine(facts, results),
        "### Method",
        "",
        "- One scratch database per size (clinic schema and config, the template and the "
        "other classes seeded, then `simtrail install`, then the baselines' functions), "
        "dropped at the end.",
        "- Each method's row counts per table are compared with the template's after every "
        "run (untimed); a run that copies a different number of rows stops the benchmark. "
        "(a) must also report no failed row.",
        f"- (a) past {plan.user_full_rows:,} template rows runs once, without a warm-up; "
        f"(a) captured runs {plan.repeats} times up to {plan.captured_full_rows:,} rows, "
        f"once up to {plan.captured_max_rows:,}, and not beyond (over a minute a run). "
        "Ratios are medians of per-repeat ratios where both ran every repeat, else ratios "
        "of medians.",
        "- Times are wall-clock around the one statement (or, for (b), the one batch of "
        "statements) that copies, from the client.",
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


def _results(results: list[SizeResult]) -> list[str]:
    keys = list(LABELS)
    out = [
        "### Results",
        "",
        f"Seconds (median; min{DASH}max under *Every repeat*) and rows copied per second.",
        "",
        "| template rows | patients | "
        + " | ".join(f"{LABELS[k]} s" for k in keys)
        + " | (a)/simtrail | (a) captured/simtrail | simtrail/(b) | simtrail/(b) replica |",
        "|---:|---:|" + "---:|" * (len(keys) + 4),
    ]
    for r in results:
        sec = r.seconds
        out.append(
            f"| {r.total:,} | {r.patients:,} | "
            + " | ".join(_s(sec[k]) for k in keys)
            + f" | {_ratio(sec['user'], sec['simtrail']):.1f}{X}"
            f" | {_fmt_ratio(_ratio(sec['user_captured'], sec['simtrail']), '.1f')}"
            f" | {_ratio(sec['simtrail'], sec['floor']):.2f}{X}"
            f" | {_ratio(sec['simtrail'], sec['floor_replica']):.2f}{X} |"
        )
    out += [
        "",
        "| template rows | " + " | ".join(f"{LABELS[k]} rows/s" for k in keys) + " |",
        "|---:|" + "---:|" * len(keys),
    ]
    for r in results:
        out.append(
            f"| {r.total:,} | " + " | ".join(_rate(r.total, r.seconds[k]) for k in keys) + " |"
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


def _fmt_ratio(value: float, fmt: str) -> str:
    return DASH if value != value else f"{format(value, fmt)}{X}"


def _targets(results: list[SizeResult]) -> list[str]:
    if not results:
        return []
    vs_user = [(r, _ratio(r.seconds["user"], r.seconds["simtrail"])) for r in results]
    vs_floor = [(r, _ratio(r.seconds["simtrail"], r.seconds["floor"])) for r in results]
    vs_replica = [(r, _ratio(r.seconds["simtrail"], r.seconds["floor_replica"])) for r in results]
    speeds = [(r, r.total / median(r.seconds["simtrail"])) for r in results]
    worst_user = min(vs_user, key=lambda x: x[1])
    worst_floor = max(vs_floor, key=lambda x: x[1])
    worst_replica = max(vs_replica, key=lambda x: x[1])
    slowest = min(speeds, key=lambda x: x[1])
    out = [
        "### Targets",
        "",
        "| target | reached (worst size) | met |",
        "|---|---|---|",
        f"| ≥ {FASTER_THAN_USER:.0f}{X} faster than (a) | {worst_user[1]:.1f}{X} at "
        f"{worst_user[0].total:,} rows | {_met(worst_user[1] >= FASTER_THAN_USER)} |",
        f"| ≤ {FLOOR_FACTOR:.0f}{X} (b), capture on | {worst_floor[1]:.2f}{X} at "
        f"{worst_floor[0].total:,} rows | {_met(worst_floor[1] <= FLOOR_FACTOR)} |",
        f"| … and ≤ {FLOOR_FACTOR:.0f}{X} (b) replica, the clone's own trigger set "
        f"| {worst_replica[1]:.2f}{X} at {worst_replica[0].total:,} rows "
        f"| {_met(worst_replica[1] <= FLOOR_FACTOR)} |",
        f"| ≥ {ROWS_PER_SECOND:,} rows/s | {slowest[1]:,.0f} rows/s at "
        f"{slowest[0].total:,} rows | {_met(slowest[1] >= ROWS_PER_SECOND)} |",
        "",
    ]
    misses = []
    for r, ratio in vs_user:
        if ratio < FASTER_THAN_USER:
            user = median(r.seconds["user"])
            sec = r.seconds
            misses.append(
                f"- **(a), {r.total:,} rows**: {ratio:.1f}{X} faster, not "
                f"{FASTER_THAN_USER:.0f}{X}: simtrail took {median(sec['simtrail']):.3f} s where "
                f"the target allows {user / FASTER_THAN_USER:.3f} s. The floor with capture (b) "
                f"is {_ratio(sec['user'], sec['floor']):.1f}{X} faster than (a), (b) replica "
                f"{_ratio(sec['user'], sec['floor_replica']):.1f}{X}, (b) bare "
                f"{_ratio(sec['user'], sec['floor_bare']):.1f}{X}."
            )
    for r, ratio in vs_floor:
        if ratio > FLOOR_FACTOR:
            misses.append(
                f"- **(b), {r.total:,} rows**: {ratio:.2f}{X} the floor's time, "
                f"{ratio / FLOOR_FACTOR:.2f}{X} the {FLOOR_FACTOR:.0f}{X} allowed."
            )
    for r, speed in speeds:
        if speed < ROWS_PER_SECOND:
            bare = r.total / median(r.seconds["floor_bare"])
            replica = r.total / median(r.seconds["floor_replica"])
            misses.append(
                f"- **rows/s, {r.total:,} rows**: {speed:,.0f}, {speed / ROWS_PER_SECOND:.0%} of "
                f"{ROWS_PER_SECOND:,}: {median(r.seconds['simtrail']):.3f} s where the target "
                f"allows {r.total / ROWS_PER_SECOND:.3f} s. The same rows copied bare run at "
                f"{bare:,.0f} rows/s; with capture on (b replica) at {replica:,.0f} rows/s, so "
                f"capture alone costs {1e6 / replica - 1e6 / bare:.1f} µs of the "
                f"{1e6 / ROWS_PER_SECOND:.0f} µs per row the target allows."
            )
    if misses:
        out += ["Targets missed, by how much:", "", *misses, ""]
    return out


def _profile(results: list[SizeResult]) -> list[str]:
    r = next((x for x in reversed(results) if x.profile is not None), None)
    if r is None or r.profile is None:
        return []
    p: Profile = r.profile
    total_self = sum(float(f["self_ms"]) for f in p.functions) or float("nan")
    capture = [f for f in p.functions if str(f["name"]).startswith("simtrail.capture_")]
    others = [f for f in p.functions if f not in capture]
    cap_ms = sum(float(f["self_ms"]) for f in capture)
    out = [
        "### Where simtrail's time goes",
        "",
        f"The clone of the {r.total:,}-row template once more, rolled back, with "
        "`track_functions = all` (time per PL/pgSQL function, `pg_stat_xact_user_functions`) "
        "and `auto_explain` (every statement, nested ones included, with `log_analyze`, "
        f"`log_triggers`). The instrumentation makes it slower: {p.seconds:.3f} s against a "
        f"median of {median(r.seconds['simtrail']):.3f} s.",
        "",
        "Self time per function (its own statements, without the functions it calls):",
        "",
        "| function | calls | self ms | share |",
        "|---|---:|---:|---:|",
    ]
    for f in others[:8]:
        out.append(
            f"| `{f['name']}` | {f['calls']:,} | {float(f['self_ms']):,.1f} "
            f"| {float(f['self_ms']) / total_self:.0%} |"
        )
    if capture:
        out.append(
            f"| capture triggers (`simtrail.capture_*`, {len(capture)} functions) "
            f"| {sum(int(f['calls']) for f in capture):,} | {cap_ms:,.1f} "
            f"| {cap_ms / total_self:.0%} |"
        )
    rest = others[8:]
    if rest:
        ms = sum(float(f["self_ms"]) for f in rest)
        out.append(f"| {len(rest)} other functions | | {ms:,.1f} | {ms / total_self:.0%} |")
    out += [
        "",
        "Statements by total time (inclusive: a statement's time includes the triggers and "
        "functions it fires, so nested ones are counted again under their callers):",
        "",
        "| ms | calls | statement |",
        "|---:|---:|---|",
    ]
    for s in p.statements[:12]:
        out.append(f"| {s.ms:,.1f} | {s.calls:,} | `{_short(s.text, 160)}` |")
    out += ["", "<details><summary>The slowest statements' plans</summary>", ""]
    for plan in p.plans:
        out += [
            f"{float(plan['ms']):,.1f} ms: `{_short(str(plan['text']), 200)}`",
            "",
            "```",
            *_plan_lines(plan["plan"], 0),
            *[
                f"Trigger {t.get('Trigger Name')}: {float(t.get('Time', 0)):,.1f} ms, "
                f"{t.get('Calls')} calls"
                for t in plan.get("triggers", [])
            ],
            "```",
            "",
        ]
    return [*out, "</details>", ""]


def _short(text: str, width: int) -> str:
    text = text.replace("`", "'").replace("|", "\\|")
    return text if len(text) <= width else text[: width - 1] + "…"


def _plan_lines(node: Any, depth: int) -> list[str]:
    if not isinstance(node, dict):
        return []
    what = str(node.get("Node Type", "?"))
    for key in ("Relation Name", "Index Name", "Function Name", "CTE Name"):
        if key in node:
            what += f" on {node[key]}"
    line = (
        f"{'  ' * depth}{what} (actual {float(node.get('Actual Total Time', 0)):,.1f} ms, "
        f"{node.get('Actual Rows', '?')} rows x {node.get('Actual Loops', '?')})"
    )
    lines = [line]
    for child in node.get("Plans", []):
        lines += _plan_lines(child, depth + 1)
    return lines


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
    settings = ", ".join(f"{k} = {v}" for k, v in facts.settings.items())
    checkpoints = all(r.checkpoints for r in results)
    return [
        "### Machine",
        "",
        f"- Date: {facts.date}",
        f"- CPU: {facts.cpu_model}, {facts.cores} cores; memory {facts.memory}",
        f"- OS: {facts.os}",
        f"- PostgreSQL: {facts.postgres} ({facts.server})",
        f"- Server settings: {settings}",
        f"- Python: {facts.python}, psycopg {facts.psycopg}",
        f"- simtrail commit: {facts.commit}",
        f"- CHECKPOINT after every run: {'yes' if checkpoints else 'no (not permitted)'}",
        f"- Load average (1/5/15 min) before and after: {facts.load_before}; "
        f"{facts.load_after}. The machine is shared; other work may have run alongside.",
        "",
    ]
