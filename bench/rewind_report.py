"""The Rewind section of BENCHMARKS.md."""

from __future__ import annotations

import os

from bench.report import median as _median
from bench.report import paired_ratio as _ratios
from bench.rewind import PHASES, Plan, ReadProfile, Results, p99

X = "\u00d7"


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _contention(results: Results) -> list[str]:
    """What the busy p99 is made of, from the backends' schedstat."""
    idle, busy, share = results.idle_wait_us, results.busy_wait_us, results.rewinder_cpu_share
    if idle is None or busy is None or share is None:
        return []
    return [
        f"Why it grows: the rewinding backend was on a CPU {share:.0%} of the time while"
        f" rewinds ran back to back, on a machine of {os.cpu_count()} cores; the two writers'"
        f" backends waited for a CPU {busy:,.0f} µs per insert on average then, against"
        f" {idle:,.0f} µs idle (their run-queue time, /proc/<pid>/schedstat). The bench's own"
        " client threads share the same cores."
    ]


def _read_profiles(results: Results) -> list[str]:
    """The log read's plan before and after the other class's rows: why a
    bigger log costs the rewind anything."""
    before, after = results.read_before, results.read_after
    if before is None or after is None:
        return []

    def said(r: ReadProfile) -> str:
        return (
            f"{r.scan} of the log {r.scan_ms:.0f} ms of a {r.ms:.0f} ms statement, "
            f"{r.hit:,} buffers found in shared buffers and {r.read:,} read from the OS"
        )

    why = ""
    if before.scan == "Seq Scan" and after.scan != before.scan:
        why = (
            " While this class's changes were most of the log the planner read it whole; "
            "among the other class's rows it goes through the (tenant, id) index instead."
        )
    if after.read > before.read:
        why += (
            f" The {results.other_log_rows:,} rows written in between pushed "
            f"{after.read - before.read:,} more of the pages it reads out of shared buffers."
        )
    return [
        "",
        f"The rewind's log read (`rewind_stage`, from `auto_explain`): before, {said(before)}; "
        f"after, {said(after)}.{why}",
        "",
    ]


def _profile(results: Results) -> list[str]:
    """Where simtrail's time goes at each size (medians of the phases)."""
    sized = [s for s in results.sizes if s.phases]
    if not sized:
        return []
    lines = [
        "",
        "Where simtrail's rewind spends its time (seconds, medians; each phase is the"
        " difference between runs stopped at successive steps of the same rewind):",
        "",
        "| phase | " + " | ".join(f"{s.changes:,} changes" for s in sized) + " |",
        "|---|" + "---:|" * len(sized),
    ]
    for phase in PHASES:
        cells = []
        for s in sized:
            seconds = _median(s.phases[phase])
            total = sum(_median(v) for v in s.phases.values())
            cells.append(f"{seconds:.3f} ({seconds / total:.0%})" if total > 0 else "n/a")
        lines.append(f"| {phase} | " + " | ".join(cells) + " |")
    return lines


def render(results: Results, plan: Plan) -> str:
    lines = [
        "## Rewind",
        "",
        "A class of 30 patients (plus two other classes) on the clinic schema, with "
        f"{plan.vitals_per_patient} vitals per patient charted before launch. After the "
        "`launch` mark the class charts new vitals, discharges one patient (a cascade "
        "through every child table) and corrects a twentieth of its vitals round after "
        "round until the log holds the number of changes below. Each repeat rolls back, "
        f"so all start from the same state; medians of {plan.repeats} interleaved repeats.",
        "",
        "- **simtrail**: `simtrail.rewind(class, 'mark:launch', false)`, capture of its "
        "own changes included;",
        "- **(a) full restore**: what the user does today: delete all the class's rows, "
        "re-insert them from the JSON snapshot saved at launch;",
        "- **(b) bare DML**: set-based DELETE/UPDATE/INSERT of exactly the net rows from "
        "a side copy prepared beforehand (the floor).",
        "",
        "(a) and (b) run in replica mode with simtrail's triggers off: no capture, no "
        "foreign-key checks.",
        "",
        "| changes undone | rows touched | class rows | simtrail s | (a) s | (b) s "
        "| simtrail/(b) | (a)/simtrail | changes/s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in results.sizes:
        rewind = _median(s.simtrail)
        lines.append(
            f"| {s.changes:,} | {s.rows_touched:,} | {s.class_rows:,} | {rewind:.3f} "
            f"| {_median(s.full_restore):.3f} | {_median(s.bare_dml):.3f} "
            f"| {_ratios(s.simtrail, s.bare_dml):.2f}{X} "
            f"| {_ratios(s.full_restore, s.simtrail):.1f}{X} "
            f"| {s.changes / rewind:,.0f} |"
        )
    lines += _profile(results)
    # The speed target is set on the heavy session, the largest here.
    heavy = max(results.sizes, key=lambda s: s.changes, default=None)
    heavy_speed = heavy.changes / _median(heavy.simtrail) if heavy else 0.0
    worst_speed = min((s.changes / _median(s.simtrail) for s in results.sizes), default=0.0)
    never_slower = min((_ratios(s.full_restore, s.simtrail) for s in results.sizes), default=0.0)
    worst_vs_b = max((_ratios(s.simtrail, s.bare_dml) for s in results.sizes), default=0.0)
    small = [s for s in results.sizes if s.rows_touched <= 0.1 * s.class_rows]
    worst_vs_a = min((_ratios(s.full_restore, s.simtrail) for s in small), default=float("nan"))
    big_log = _ratios(results.big_log, results.empty_log) if results.big_log else float("nan")
    idle, busy = p99(results.idle_latencies_ms), p99(results.busy_latencies_ms)
    lines += [
        "",
        f"With {results.other_log_rows:,} log rows of another class added, the largest "
        f"rewind took {_median(results.big_log):.3f} s against {_median(results.empty_log):.3f} s "
        f"before ({big_log:.2f}{X}; a CHECKPOINT after the insert, so the rewinds do not "
        f"flush its pages).",
        *_read_profiles(results),
        f"Another class's single-row inserts (2 clients): p99 {idle:.1f} ms idle, "
        f"{busy:.1f} ms while rewinds ran back to back ({busy / idle:.2f}{X}; "
        f"{len(results.idle_latencies_ms):,} and {len(results.busy_latencies_ms):,} samples).",
        *_contention(results),
        "",
        "| target | reached | met |",
        "|---|---|---|",
        f"| ≥ 300,000 changes undone per second on the heavy session "
        f"| {heavy_speed:,.0f}/s at {heavy.changes if heavy else 0:,} changes "
        f"({worst_speed:,.0f}/s at the smallest size, where fixed costs dominate) "
        f"| {_met(heavy_speed >= 300_000)} |",
        f"| ≤ 2{X} bare DML (b) | {worst_vs_b:.2f}{X} (worst size) | {_met(worst_vs_b <= 2)} |",
        f"| ≥ 10{X} faster than full restore (a) when ≤ 10% of the class changed "
        f"| {worst_vs_a:.1f}{X} | {_met(worst_vs_a >= 10)} |",
        f"| never slower than full restore (a), at any churn | {never_slower:.1f}{X} (worst size) "
        f"| {_met(never_slower >= 1)} |",
        f"| ≤ 1.2{X} with {results.other_log_rows:,} other log rows | {big_log:.2f}{X} "
        f"| {_met(big_log <= 1.2)} |",
        f"| other classes' write p99 ≤ 2{X} idle | {busy / idle:.2f}{X} "
        f"| {_met(busy / idle <= 2)} |",
    ]
    return "\n".join(lines)
