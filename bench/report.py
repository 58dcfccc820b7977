"""BENCHMARKS.md: each benchmark owns one section and rewrites only that.

A section sits between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``.
Writing a section replaces the text between its markers, or appends the
section when the file does not have it yet, so capture, rewind and compaction
benchmarks can each refresh their own numbers without touching the others.
"""

from __future__ import annotations

import itertools
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.anatomy import VARIANTS, Anatomy
from bench.capture import CONFIGS, LABELS, OPS, SESSIONS, WARM_STATEMENTS, Plan, Results
from bench.machine import Machine
from bench.machine import section as machine_section

HEADER = """# Benchmarks

Measured by `python -m bench` (`make bench`). Each section below is written by
one benchmark between its `<!-- bench:… -->` markers and is replaced whole on
the next run; edit the code in `bench/`, not the numbers here.
"""


def write_section(path: Path, name: str, body: str) -> None:
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{body.strip()}\n{end}"
    text = path.read_text(encoding="utf-8") if path.exists() else HEADER
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")


# --- numbers ---------------------------------------------------------------

X = "\u00d7"  # multiplication sign
DASH = "\u2013"  # en dash
MINUS = "\u2212"


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def paired_ratio(top: Sequence[float], bottom: Sequence[float]) -> float:
    """Median over repeats of top/bottom, each pair measured back to back."""
    return median([a / b for a, b in zip(top, bottom, strict=True) if b])


def ops(value: float) -> str:
    return f"{value:,.0f}"


def secs(value: float) -> str:
    return f"{value:.3f}"


def micros(value: float) -> str:
    return f"{value:,.0f}"


def ratio(value: float) -> str:
    return f"{value:.2f}{X}"


def spread(values: Sequence[float], fmt: str) -> str:
    if len(values) < 2:
        return format(values[0], fmt) if values else DASH
    return f"{format(min(values), fmt)}{DASH}{format(max(values), fmt)}"


# --- targets ---------------------------------------------------------------

SINGLE_TARGET = 0.85  # simtrail throughput at least this much of no trigger's
BULK_TARGET = 1.5  # simtrail time at most this many times no trigger's


@dataclass(frozen=True)
class Row:
    kind: str  # "single" or "bulk"
    op: str
    none: float
    naive: float
    simtrail: float
    naive_vs_none: float
    vs_none: float
    vs_naive: float

    @property
    def label(self) -> str:
        return f"single-row {self.op}" if self.kind == "single" else f"bulk {self.op}"

    @property
    def met_none(self) -> bool:
        if self.kind == "single":
            return self.vs_none >= SINGLE_TARGET
        return self.vs_none <= BULK_TARGET

    @property
    def met_naive(self) -> bool:
        return self.vs_naive >= 1.0 if self.kind == "single" else self.vs_naive <= 1.0

    @property
    def target(self) -> str:
        if self.kind == "single":
            return f"≥ {SINGLE_TARGET}{X} no trigger, ≥ 1{X} naive"
        return f"≤ {BULK_TARGET}{X} no trigger, ≤ 1{X} naive"

    @property
    def met(self) -> str:
        if self.met_none and self.met_naive:
            return "yes"
        missed = []
        if not self.met_none:
            missed.append("no-trigger target")
        if not self.met_naive:
            missed.append("naive")
        return "no (" + ", ".join(missed) + ")"


def rows(results: Results) -> list[Row]:
    found = []
    for kind in ("single", "bulk"):
        for op in OPS:
            by = results.values[kind].get(op)
            if not by:
                continue
            found.append(
                Row(
                    kind,
                    op,
                    median(by["none"]),
                    median(by["naive"]),
                    median(by["simtrail"]),
                    paired_ratio(by["naive"], by["none"]),
                    paired_ratio(by["simtrail"], by["none"]),
                    paired_ratio(by["simtrail"], by["naive"]),
                )
            )
    return found


# --- the section -------------------------------------------------------------


def capture_section(
    results: Results,
    anatomy: Anatomy | None,
    machine: Machine,
    *,
    quick: bool,
) -> str:
    plan = results.plan
    out: list[str] = ["## Capture", ""]
    if quick:
        out += [
            "> **Quick smoke run** (`--quick`): too few operations and repeats to be a",
            "> measurement. Run `make bench` for numbers worth quoting.",
            "",
        ]
    out += [
        f"Measured {machine.date} on {machine.cores} cores ({machine.cpu_model}), "
        f"PostgreSQL {machine.postgres}; details under *Machine*. What is compared, on "
        "identical copies of the clinic fixture's `public.patient_vitals`: **no trigger**; "
        "the seed note's **naive trigger** (Solution 3: a row-level trigger writing "
        "`row_to_json` of each row into `simulation_tenant_changes`); and **simtrail** "
        "installed with the clinic config.",
        "",
        "### Results",
        "",
        f"Single-row: {plan.clients} concurrent clients, each with its own autocommit "
        f"connection, {plan.ops_per_client:,} statements each (operations per second, "
        f"higher is better). Bulk: one statement over {plan.bulk_rows:,} rows (seconds "
        f"including commit, lower is better). Medians over {plan.repeats} repeats; each "
        "ratio is the median of the per-repeat ratios.",
        "",
        "| operation | no trigger | naive | simtrail | naive / no trigger "
        "| simtrail / no trigger | simtrail / naive | target | met? |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    table = rows(results)
    for row in table:
        fmt = ops if row.kind == "single" else secs
        unit = " (ops/s)" if row.kind == "single" else f" {plan.bulk_rows:,} rows (s)"
        out.append(
            f"| {row.label}{unit} | {fmt(row.none)} | {fmt(row.naive)} | {fmt(row.simtrail)} "
            f"| {ratio(row.naive_vs_none)} | {ratio(row.vs_none)} | {ratio(row.vs_naive)} "
            f"| {row.target} | {row.met} |"
        )
    out += ["", *_cpu_table(results), *_spread(results), *_storage(results)]
    out += _plan_cache(results)
    out += _misses(table, results, anatomy)
    if anatomy is not None:
        out += _anatomy(anatomy)
    out += _machine(machine)
    out += _method(results, anatomy)
    out += _reproduce()
    return "\n".join(out)


def _cpu_table(results: Results) -> list[str]:
    cpu = results.values
    if not results.cpu or not cpu["single_cpu"]:
        return []
    out = [
        "Server CPU per operation: on-CPU time of the PostgreSQL backends doing the "
        "work (from `/proc/<pid>/schedstat`), which moves far less with background load "
        "than wall-clock time. Lower is better.",
        "",
        "| operation | no trigger | naive | simtrail | naive / no trigger "
        "| simtrail / no trigger | simtrail / naive |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, label, fmt in (
        ("single_cpu", "single-row {op} (µs/op)", micros),
        ("bulk_cpu", "bulk {op} (s)", secs),
    ):
        for op in OPS:
            by = cpu[kind].get(op)
            if not by:
                continue
            out.append(
                f"| {label.format(op=op)} | {fmt(median(by['none']))} "
                f"| {fmt(median(by['naive']))} | {fmt(median(by['simtrail']))} "
                f"| {ratio(paired_ratio(by['naive'], by['none']))} "
                f"| {ratio(paired_ratio(by['simtrail'], by['none']))} "
                f"| {ratio(paired_ratio(by['simtrail'], by['naive']))} |"
            )
    return [*out, ""]


def _spread(results: Results) -> list[str]:
    out = [
        f"<details><summary>Every repeat (min{DASH}max, then each value in run order)</summary>",
        "",
        f"| measurement | configuration | min{DASH}max | values |",
        "|---|---|---:|---|",
    ]
    for kind, unit, fmt in (
        ("single", "ops/s", ",.0f"),
        ("bulk", "s", ".3f"),
        ("single_cpu", "CPU µs/op", ",.0f"),
        ("bulk_cpu", "CPU s", ".3f"),
    ):
        for op, by in results.values[kind].items():
            name = ("single-row " if kind.startswith("single") else "bulk ") + f"{op} ({unit})"
            for config in CONFIGS:
                values = by[config]
                listed = ", ".join(format(v, fmt) for v in values)
                out.append(f"| {name} | {LABELS[config]} | {spread(values, fmt)} | {listed} |")
    return [*out, "", "</details>", ""]


def _storage(results: Results) -> list[str]:
    out = []
    for config in CONFIGS[1:]:
        logs = results.logs.get(config, {})
        if not logs:
            continue
        changes = max(n for n, _ in logs.values())
        total = sum(b for _, b in logs.values())
        tables = ", ".join(f"`{t}` {n:,} rows" for t, (n, _) in logs.items())
        per = f"{total / changes:,.0f} bytes per logged change" if changes else "no rows"
        out.append(f"- {LABELS[config]}: {tables}; {total / 2**20:,.1f} MiB with indexes, {per}.")
        parts = results.log_parts.get(config, [])
        if changes and parts:
            out.append(
                "  Per logged change: "
                + ", ".join(f"{name} {size / changes:,.0f} B" for name, size in parts)
                + "."
            )
    if not out:
        return []
    return [
        "Log size at the end of the run (all repeats and the warm-up round):",
        "",
        *out,
        "",
        *_bytes_target(results),
    ]


def _bytes_target(results: Results) -> list[str]:
    """Issue 10: bytes per logged change, everything capture writes, at most the naive's."""
    per: dict[str, float] = {}
    for config in ("naive", "simtrail"):
        logs = results.logs.get(config, {})
        changes = max((n for n, _ in logs.values()), default=0)
        if not changes:
            return []
        per[config] = sum(b for _, b in logs.values()) / changes
    ratio_ = per["simtrail"] / per["naive"]
    met = ratio_ <= 1
    line = (
        f"Target: bytes per logged change (log, its indexes and whatever else capture writes)"
        f" at most the naive trigger's: simtrail {per['simtrail']:,.0f} B against"
        f" {per['naive']:,.0f} B ({ratio_:.2f}{X}), "
        + ("met." if met else f"**missed** by {per['simtrail'] - per['naive']:,.0f} B a change.")
    )
    if met:
        return [line, ""]
    changes = max(n for n, _ in results.logs["simtrail"].values())
    parts = sorted(results.log_parts.get("simtrail", []), key=lambda p: -p[1])
    naive_row = max((size for name, size in results.log_parts.get("naive", [])), default=0)
    extra = [
        f"{name} {size / changes:,.0f} B"
        for name, size in parts
        if size / changes >= 5 and name != "simtrail.changes"
    ]
    row = next((size for name, size in parts if name == "simtrail.changes"), 0)
    return [
        line
        + f" Where it goes: the log row itself is {row / changes:,.0f} B against the naive"
        f" table's {naive_row / changes:,.0f} B (simtrail keeps the key, the old key, the"
        " transaction and the move as columns of their own beside the images), and beyond"
        " the row: " + ", ".join(extra) + " (the (tenant, id) index serves every rewind and"
        " export; the transaction row carries the actor once per transaction instead of once"
        " per change).",
        "",
    ]


def _plan_cache(results: Results) -> list[str]:
    cache = results.plan_cache
    if not cache:
        return []
    sizes = sorted({size for by in cache.values() for times in by.values() for size in times})
    out = [
        "### Bulk UPDATE after single-row statements on the same connection",
        "",
        "An application's pooled connection runs small statements most of the time and "
        "a bulk one now and then. PL/pgSQL keeps the plans of a trigger function's "
        "statements for the whole session, planned with the transition tables as they "
        f"were then. Here each connection first runs {WARM_STATEMENTS} single-row INSERTs "
        "and UPDATEs, then one bulk UPDATE (seconds, one measurement each; every "
        "doubling of rows should roughly double the time):",
        "",
        "| configuration | session | "
        + " | ".join(f"{n:,} rows" for n in sizes)
        + " | growth per doubling |",
        "|---|---|" + "---:|" * len(sizes) + "---:|",
    ]
    for config in CONFIGS:
        for session in SESSIONS:
            times = cache.get(config, {}).get(session, {})
            cells = [secs(times[n]) if n in times else DASH for n in sizes]
            pairs = [
                times[b] / times[a]
                for a, b in itertools.pairwise(sizes)
                if a in times and b in times and times[a] > 0 and b == 2 * a
            ]
            growth = f"{median(pairs):.1f}{X}" if pairs else DASH
            out.append(f"| {LABELS[config]} | {session} | " + " | ".join(cells) + f" | {growth} |")
    simtrail = cache.get("simtrail", {})
    fresh, warm = simtrail.get(SESSIONS[0], {}), simtrail.get(SESSIONS[1], {})
    if sizes and sizes[-1] in fresh and sizes[-1] in warm and fresh[sizes[-1]] > 0:
        n = sizes[-1]
        doubling = [
            warm[b] / warm[a]
            for a, b in itertools.pairwise(sizes)
            if a in warm and b in warm and warm[a] > 0 and b == 2 * a
        ]
        out += [
            "",
            f"At {n:,} rows simtrail's bulk UPDATE took {warm[n] / fresh[n]:.0f}{X} as long "
            "after single-row statements as on a fresh connection.",
        ]
        if doubling and median(doubling) >= 3:
            out[-1] += (
                f" Its time grows about {median(doubling):.1f}{X} per doubling, i.e. "
                "quadratically: the plan cached for one-row transition tables pairs old "
                "and new rows with a nested loop. Extrapolated, a "
                f"{results.plan.bulk_rows:,}-row UPDATE on such a connection would take "
                f"about {warm[n] * (results.plan.bulk_rows / n) ** 2:,.0f} s."
            )
    return [*out, ""]


def _misses(table: list[Row], results: Results, anatomy: Anatomy | None) -> list[str]:
    out = ["### Targets missed, and why", ""]
    missed = [r for r in table if not (r.met_none and r.met_naive)]
    if not missed:
        return [*out, "Every target was met in this run.", ""]
    for row in missed:
        parts = []
        if not row.met_none:
            if row.kind == "single":
                short = (SINGLE_TARGET - row.vs_none) / SINGLE_TARGET
                parts.append(
                    f"reached {ratio(row.vs_none)} of no-trigger throughput against "
                    f"≥ {SINGLE_TARGET}{X} ({short:.0%} short)"
                )
            else:
                parts.append(
                    f"took {ratio(row.vs_none)} the no-trigger time against "
                    f"≤ {BULK_TARGET}{X} ({row.vs_none / BULK_TARGET:.1f}{X} the target)"
                )
        if not row.met_naive:
            if row.kind == "single":
                parts.append(f"{1 - row.vs_naive:.0%} slower than the naive trigger")
            else:
                parts.append(f"{row.vs_naive - 1:.0%} slower than the naive trigger")
        out.append(f"- **{row.label}**: " + "; ".join(parts) + ".")
    out.append("")
    if anatomy is not None:
        out += _why(anatomy)
    return out


def _anatomy_kind(anatomy: Anatomy, bulk: bool) -> tuple[str, str]:
    """The measure the anatomy reports: backend CPU when available, else wall time."""
    if bulk:
        return ("bulk_cpu", "backend CPU s") if anatomy.cpu else ("bulk", "wall s")
    return ("single_cpu", "backend CPU µs/op") if anatomy.cpu else ("single", "wall µs/op")


def _cost(
    anatomy: Anatomy, kind: str, key: str, op: str, pick: Callable[[Sequence[float]], float] = min
) -> float | None:
    """The anatomy's estimate: the least-disturbed repeat (noise only ever adds time)."""
    values = anatomy.values[kind].get(key, {}).get(op)
    return pick(values) if values else None


LADDER = (
    (
        "none",
        "empty",
        "the statement trigger itself (collecting the transition table, calling a function)",
    ),
    (
        "empty",
        "prologue",
        "the function's prologue (SECURITY DEFINER, SET search_path, "
        "reading the xid and the registration flag)",
    ),
    (
        "prologue",
        "register",
        "registering the transaction (the actor and its row in simtrail.transactions)",
    ),
    ("register", "simtrail", "the INSERT … SELECT into simtrail.changes"),
)


def signed(value: float, fmt: Callable[[float], str]) -> str:
    text = fmt(abs(value))
    return f"{MINUS}{text}" if value < 0 and text.strip("0.,") else text


def _why(anatomy: Anatomy) -> list[str]:
    """Per operation: simtrail's extra cost, split by the ladder and the removals."""
    out = []
    for bulk in (False, True):
        kind, unit = _anatomy_kind(anatomy, bulk)
        fmt = secs if bulk else micros
        for op in OPS:
            cost = {v.key: _cost(anatomy, kind, v.key, op) for v in VARIANTS}
            base, none, naive = cost["simtrail"], cost["none"], cost["naive"]
            if base is None or none is None or naive is None:
                continue
            steps = []
            for low, high, what in LADDER:
                a, b = cost.get(low), cost.get(high)
                if a is not None and b is not None:
                    steps.append(f"{what} {signed(b - a, fmt)}")
            savings = sorted(
                (
                    (base - c, v.label)
                    for v in VARIANTS
                    if v.group == "removal" and (c := cost[v.key]) is not None
                ),
                reverse=True,
            )
            top = "; ".join(
                f"{label} saves {fmt(saved)}" for saved, label in savings[:3] if saved > 0
            )
            name = f"bulk {op}" if bulk else f"single-row {op}"
            out.append(
                f"- **{name}** ({unit}): simtrail {fmt(base)}, no trigger {fmt(none)}, "
                f"naive {fmt(naive)}: simtrail adds {signed(base - none, fmt)}, the naive "
                f"trigger {signed(naive - none, fmt)}."
                + (" Step by step: " + "; ".join(steps) + "." if steps else "")
                + (f" Biggest single removals: {top}." if top else "")
            )
    if out:
        out = [
            "Where simtrail's extra time goes, from the anatomy below (minimum over repeats; "
            "differences of a few µs are within noise):",
            "",
            *out,
            "",
            *_reach(anatomy),
        ]
    return out


def _reach(anatomy: Anatomy) -> list[str]:
    """What the anatomy says about how far each target is, beyond tuning."""
    out = []
    kind, _ = _anatomy_kind(anatomy, False)
    register, naive, none = "register", "naive", "none"
    for op in OPS:
        reg, pro = _cost(anatomy, kind, register, op), _cost(anatomy, kind, "prologue", op)
        nv, no = _cost(anatomy, kind, naive, op), _cost(anatomy, kind, none, op)
        if None in (reg, pro, nv, no):
            continue
        assert reg is not None and pro is not None and nv is not None and no is not None
        if reg - pro > nv - no:
            out.append(
                f"- Single-row {op}: registering the transaction alone ("
                f"{micros(reg - pro)} µs) costs more than the naive trigger's whole overhead "
                f"({micros(nv - no)} µs), so simtrail cannot match the naive trigger on "
                "autocommit statements while every transaction writes its own row."
            )
    kind, _ = _anatomy_kind(anatomy, True)
    for op in OPS:
        bare, no = _cost(anatomy, kind, "no_json", op), _cost(anatomy, kind, none, op)
        if bare is None or no is None or no <= 0:
            continue
        if bare / no > BULK_TARGET:
            out.append(
                f"- Bulk {op}: even with no jsonb images built at all, simtrail took "
                f"{bare / no:.1f}{X} the no-trigger time: on this table the statement itself "
                "is cheaper than writing one log row per changed row, so the "
                f"≤ {BULK_TARGET}{X} target is out of reach for a capture that writes one log "
                "row per changed row."
            )
    if out:
        out = ["How far the targets are beyond tuning:", "", *out, ""]
    return out


def _anatomy(anatomy: Anatomy) -> list[str]:
    single_kind, single_unit = _anatomy_kind(anatomy, False)
    bulk_kind, bulk_unit = _anatomy_kind(anatomy, True)
    out = [
        "### Anatomy of simtrail's capture cost",
        "",
        "The same databases after the comparison, one client each, every single-row "
        "statement its own transaction with `synchronous_commit = off` so the disk's "
        f"flush latency drops out. Single-row: {single_unit} over {anatomy.ops:,} "
        f"statements per operation, {anatomy.repeats} repeats. Bulk: {bulk_unit} for one "
        f"statement over {anatomy.bulk_rows:,} rows, {anatomy.bulk_repeats} repeats. "
        "Background load on a shared machine only ever adds time, so each cell is the "
        "least-disturbed repeat (the minimum); medians are in the table after it. "
        "Each simtrail variant changes the generated capture, is measured and is undone; "
        "the log is emptied before each variant. The numbered rows build the capture "
        "function up one part at a time (step 4 is simtrail as installed), so their "
        "differences add up to the whole cost; the rows below them take one part out of "
        "the installed function. Brackets: difference from simtrail as installed.",
        "",
        "| variant | INSERT | UPDATE | DELETE | bulk INSERT | bulk UPDATE | bulk DELETE |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for variant in VARIANTS:
        if variant.key in anatomy.unavailable:
            out.append(f"| {variant.label} | n/a: {anatomy.unavailable[variant.key]} |||||| ")
            continue
        cells = []
        for kind, fmt in ((single_kind, micros), (bulk_kind, secs)):
            for op in OPS:
                cost = _cost(anatomy, kind, variant.key, op)
                base = _cost(anatomy, kind, "simtrail", op)
                if cost is None:
                    cells.append(DASH)
                elif base is None or variant.key == "simtrail" or variant.config != "simtrail":
                    cells.append(fmt(cost))
                else:
                    delta = signed(cost - base, fmt)
                    sign = "" if delta.startswith(MINUS) else "+"
                    cells.append(f"{fmt(cost)} ({sign}{delta})")
        out.append(f"| {variant.label} | " + " | ".join(cells) + " |")
    out += [
        "",
        "<details><summary>Medians of the same measurements</summary>",
        "",
        "| variant | INSERT | UPDATE | DELETE | bulk INSERT | bulk UPDATE | bulk DELETE |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for variant in VARIANTS:
        if variant.key in anatomy.unavailable:
            continue
        cells = []
        for kind, fmt in ((single_kind, micros), (bulk_kind, secs)):
            for op in OPS:
                cost = _cost(anatomy, kind, variant.key, op, median)
                cells.append(DASH if cost is None else fmt(cost))
        out.append(f"| {variant.label} | " + " | ".join(cells) + " |")
    return [*out, "", "</details>", ""]


def _machine(machine: Machine) -> list[str]:
    return machine_section(machine)


def _method(results: Results, anatomy: Anatomy | None) -> list[str]:
    plan: Plan = results.plan
    checkpoint = (
        "`VACUUM (ANALYZE)` of the benchmark table and that configuration's log tables, "
        "then `CHECKPOINT`"
        if results.checkpoints
        else "`VACUUM (ANALYZE)` of the benchmark table and that configuration's log tables "
        "(CHECKPOINT was not permitted to this role)"
    )
    return [
        "### Method",
        "",
        "- One run creates three scratch databases on one server (dropped at the end) and "
        "applies the clinic schema and config to each, seeded identically "
        f"({plan.tenants} tenants {X} {plan.patients_per_tenant} patients). `none` gets no "
        "capture, `naive` gets `bench/sql/naive_trigger.sql`, `simtrail` gets "
        "`simtrail.triggers.installer.install`. Three databases, so no configuration "
        "shares a log table with another.",
        "- The naive trigger is the seed note's, extended to log UPDATE (old and new row) "
        "and DELETE (old row) so it records what simtrail records. Its "
        "`simulation_active` lookup is left out: that would only slow it down.",
        "- All work runs as the table owner (row-level security does not apply); every "
        "connection carries PostgREST-style `request.jwt.claims`, so simtrail records a "
        "real actor. Autovacuum is switched off on the measured and log tables.",
        f"- Before every timed measurement, untimed: {checkpoint}. The same state for "
        "each configuration, and no vacuum or checkpoint lands inside one configuration's "
        "measurement only.",
        "- Interleaving: in each repeat every operation runs for all three configurations "
        "back to back, in an order that rotates between repeats (none, naive, simtrail; "
        "then naive, simtrail, none; …). One unrecorded warm-up round comes first.",
        f"- Single-row: each client charts its own {plan.ops_per_client:,} readings "
        "(INSERT with client-generated uuid ids), then corrects two fields of each "
        "(UPDATE by id), then deletes them (DELETE by id); each client is a different "
        "user, so foreign-key checks do not all lock one row. psycopg prepares the "
        "statements after five executions, as an application would.",
        f"- Bulk: `INSERT … SELECT` over `generate_series(1, {plan.bulk_rows})` spread "
        "over all seeded patients, `UPDATE` of those rows, `DELETE` of them, each one "
        "statement in autocommit.",
        "- The log tables keep growing through the run, as they would in production.",
        "- `public.patient_vitals` has only its primary key as an index, so UPDATE and "
        "DELETE without a trigger are about as cheap as they get; a table with more "
        "indexes would show smaller ratios for the same capture cost.",
        *(
            ["- The anatomy reuses the three databases afterwards; see its own paragraph."]
            if anatomy is not None
            else []
        ),
        f"- Durations: capture {results.seconds:,.0f} s"
        + (f", anatomy {anatomy.seconds:,.0f} s." if anatomy is not None else "."),
        "",
    ]


def _reproduce() -> list[str]:
    return [
        "### Reproduce",
        "",
        "```sh",
        "make bench                     # python -m bench: full run, rewrites this section",
        "python -m bench --quick        # smoke run in under a minute, prints the section",
        "python -m bench --dsn 'host=… user=… dbname=postgres' --repeats 7",
        "```",
        "",
        "Without `--dsn` the bench uses `$DATABASE_URL`, else the local server "
        "`host=127.0.0.1 port=5432 user=root dbname=postgres` if it answers, else an "
        "embedded PostgreSQL (pgserver). The role needs CREATEDB; CHECKPOINT "
        "(superuser or `pg_checkpoint`) is used when allowed.",
        "",
    ]
