"""The Compaction section of BENCHMARKS.md, and the job that measures it."""

from __future__ import annotations

import argparse

from bench import machine, server
from bench.compaction import FULL, QUICK, Results, Rewind, run
from bench.report import DASH, X, median, spread

# Issue #4 item 9.
ROWS_PER_SECOND = 100_000
# "Cost grows with the rows touched, not with the history's length": the
# same short rewind in a history this many times longer, or after
# compaction, may take at most this factor longer (room for noise on a
# shared machine, far below the history's growth).
FLAT = 1.25
# Issue #10: after compaction and the daemon's own upkeep, the log takes at
# most this share of its size before.
SIZE_SHARE = 0.30


def job(args: argparse.Namespace) -> str:
    """`python -m bench --only compaction`: measure and render the section."""
    plan = server.chosen_plan(args, FULL, QUICK)
    with server.server(args.dsn, args.datadir) as srv, server.Scratch(srv.admin_dsn) as scratch:
        facts = machine.collect(srv.description)
        server.say(f"bench: compaction on {srv.description}")
        results = run(scratch.create, plan, facts, server.say)
    facts.load_after = machine.load()
    return render(results, facts, quick=args.quick)


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _mib(value: object) -> str:
    return f"{int(str(value)) / 1024**2:,.1f} MiB"


def _rate(rows: int, seconds: float) -> float:
    return rows / seconds if seconds else float("nan")


def _cost(rewind: Rewind) -> list[float]:
    """What rewinds are compared by: backend CPU time where measured, else wall-clock."""
    return rewind.cpu_seconds or rewind.seconds


def _ratio(top: Rewind | None, bottom: Rewind | None) -> float:
    if top is None or bottom is None:
        return float("nan")
    return median(_cost(top)) / median(_cost(bottom))


STAGES = {
    "early": "history at {n:,} changes",
    "before": "full history, before compaction",
    "compacted": "right after compaction",
    "vacuumed": "after compaction and the daemon's upkeep",
}


def render(results: Results, facts: machine.Machine, *, quick: bool) -> str:
    plan = results.plan
    h = results.history
    batches = results.batches
    rate = _rate(results.scanned, results.compact_seconds)
    batch_rate = median([_rate(b.scanned, b.seconds) for b in batches])
    floor = median([_rate(b.scanned, b.seconds) for b in results.bare_moves])
    out = ["## Compaction", ""]
    if quick:
        out += [
            "> **Quick smoke run** (`--quick`): a small history and one repeat; not a",
            "> measurement. Run `python -m bench --only compaction` for numbers worth quoting.",
            "",
        ]
    out += [
        f"Measured {facts.date} on {facts.cores} cores ({facts.cpu_model}), PostgreSQL "
        f"{facts.postgres}; details under *Machine*.",
        "",
        f"**History.** {plan.tenants} classes of {plan.patients_per_tenant} patients on the "
        f"clinic schema, {plan.vitals_per_patient} vitals per patient charted before every "
        f"class's `launch` mark. Then {results.hours} \u201chours\u201d, each closed by "
        "`simtrail.tick()` (standing in for the daemon's hourly tick). In an hour every class "
        f"re-charts {plan.hot_rows} of its vitals {plan.rounds} times over "
        f"({plan.rows_per_xact} rows per transaction), and each round amends 5 notes and "
        f"charts 5 new vitals; every {plan.discharge_every} hours each class discharges a "
        "patient (a cascade through every child table); in hours 4 and 8 every class takes a "
        "`break` mark mid-hour. Everything goes through simtrail's capture triggers: "
        f"**{h['changes']:,} changes** ({h['updates']:,} updates, {h['inserts']:,} inserts, "
        f"{h['deletes']:,} deletes) in {h['transactions']:,} transactions, with {h['ticks']} "
        f"ticks and {h['marks']} marks as cut points.",
        "",
        "### Compaction throughput",
        "",
        f"The history is sealed first ({results.sealed:,} changes in"
        f" {results.seal_seconds:.1f} s, not counted below; see *Sealing*), as the daemon's"
        " every-cycle seal would have done long before history is old enough to compact."
        f" Then `simtrail.thin_ticks('0', '1 microsecond')` (kept every tick; removed "
        f"{results.thinned}), then `simtrail.compact_batch('0', {plan.batch:,})` in a loop "
        "until it reports `done`, each batch its own transaction. Window `0`: the frontier is "
        "the last tick, taken after the last change, so the whole history is compacted.",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| log rows scanned | {results.scanned:,} |",
        f"| batches | {len(batches)} |",
        f"| time, all batches (s) | {results.compact_seconds:.2f} |",
        f"| **throughput, overall (log rows/s)** | **{rate:,.0f}** |",
        f"| throughput, median batch (log rows/s) | {batch_rate:,.0f} |",
    ]
    if results.bare_moves:
        out.append(
            f"| floor: the same rows only moved into the archive (log rows/s) | {floor:,.0f} |"
        )
    if results.compact_cpu_seconds is not None:
        out.append(
            f"| backend CPU time (s) | {results.compact_cpu_seconds:.2f} "
            f"({results.compact_cpu_seconds / results.compact_seconds:.0%} of wall) |"
        )
    archived = sum(b.archived for b in batches)
    net = sum(b.net for b in batches)
    out += [
        f"| originals archived | {archived:,} |",
        f"| net changes written in their place | {net:,} "
        f"({archived / net if net else 0:.1f} originals each) |",
        f"| changes left as they were | {results.scanned - archived:,} |",
        "",
        *_drift(results),
        "### Log size",
        "",
        "`simtrail.daemon_stats`: bytes include indexes. A DELETE does not shrink a table: "
        "right after compaction the log still has its old size. The daemon's upkeep "
        "(`daemon/upkeep.py`, what the daemon runs after compaction) VACUUMs it, moves the "
        "rows off its last pages into the space freed and VACUUMs again, which cuts the "
        "emptied end off, then rebuilds its indexes with `REINDEX CONCURRENTLY`: no lock a "
        "writer waits for. `VACUUM FULL` (which locks writers out) shows the size of what "
        "is left, for comparison.",
        "",
        "| state | log rows | of which net | log size | archive rows | archive size |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    b, a = results.before, results.after
    out += [
        f"| before compaction | {b['log_rows']:,} | {b['net_rows']:,} | {_mib(b['log_bytes'])} "
        f"| {b['archive_rows']:,} | {_mib(b['archive_bytes'])} |",
        f"| right after compaction | {a['log_rows']:,} | {a['net_rows']:,} "
        f"| {_mib(a['log_bytes'])} | {a['archive_rows']:,} | {_mib(a['archive_bytes'])} |",
        f"| after the daemon's upkeep ({_upkeep(results)}) | {a['log_rows']:,} "
        f"| {a['net_rows']:,} | {_mib(results.after_vacuum_bytes)} | {DASH} | {DASH} |",
        f"| after VACUUM FULL of the log | {a['log_rows']:,} | {a['net_rows']:,} "
        f"| {_mib(results.after_full_bytes)} | {DASH} | {DASH} |",
        "",
        f"Log rows {a['log_rows'] / b['log_rows']:.0%} of before; after the daemon's upkeep "
        f"the log is {results.after_vacuum_bytes / int(b['log_bytes']):.0%} of its size "
        f"before ({results.after_full_bytes / int(b['log_bytes']):.0%} after VACUUM FULL).",
        "",
        *_rewinds(results),
        *_targets(results, rate, batch_rate),
        *_batches(results),
        *_machine(facts),
        *_method(results),
        "### Reproduce",
        "",
        "```sh",
        "python -m bench --only compaction            # full run, rewrites this section",
        "python -m bench --only compaction --quick    # smoke run, prints the section",
        "```",
    ]
    return "\n".join(out)


def _rewinds(results: Results) -> list[str]:
    r = results.rewinds
    out = [
        "### Rewinds before and after",
        "",
        f"One class ({results.history['tenant_changes']:,} of the log's changes are its own) "
        "rewound with `simtrail.rewind(class, 'mark:…', false)`: to `recent`, a mark taken "
        "just before a short session (3 rounds of corrections to 40 vitals, 10 new vitals, "
        "2 amended notes; the same statements each time), and to `launch`, which undoes "
        "everything the class did. The `recent` mark and session are made once a quarter of "
        "the history is written and again at its end. Each rewind is rolled back; medians "
        f"of at least {results.plan.repeats} repeat{_s(results.plan.repeats)} after one warm-up "
        "(short rewinds get more, "
        "up to about a second of repeats, since a neighbour's burst of work doubles a "
        "30 ms rewind). *Same state* compares a digest "
        "of the class's rows after the rewind (`simtrail.tenant_state`) with the one "
        "before compaction. *CPU s* is the on-CPU time of the backend running the rewind "
        "(`/proc/<pid>/schedstat`), which a neighbour's load barely moves; the ratios under "
        "*Targets* compare it when measured, else wall-clock medians.",
        "",
        "| rewind to | when | log rows | changes undone | rows touched | median s "
        "| min\u2013max s | median CPU s | repeats | same state |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for target in ("recent", "launch"):
        reference = r.get(f"{target}@before")
        for stage, label in STAGES.items():
            rw = r.get(f"{target}@{stage}")
            if rw is None:
                continue
            same = (
                DASH
                if reference is None or rw is reference or stage == "early"
                else _met(rw.digest == reference.digest)
            )
            out.append(
                f"| `{target}` | {label.format(n=rw.history)} | {rw.history:,} "
                f"| {rw.changes_undone:,} | {rw.rows_touched:,} | {median(rw.seconds):.3f} "
                f"| {spread(rw.seconds, '.3f')} "
                f"| {f'{median(rw.cpu_seconds):.3f}' if rw.cpu_seconds else DASH} "
                f"| {len(rw.seconds)} | {same} |"
            )
    return [*out, ""]


def _upkeep(results: Results) -> str:
    u = results.upkeep
    if not u:
        return "not run"
    rebuilt = ", indexes rebuilt" if u.get("reindexed") else ""
    return f"{float(u['seconds']):.1f} s, {int(u['rows_moved']):,} rows moved{rebuilt}"


def _targets(results: Results, rate: float, batch_rate: float) -> list[str]:
    r = results.rewinds
    early, before = r.get("recent@early"), r.get("recent@before")
    longer = _ratio(before, early)
    growth = before.history / early.history if before and early else float("nan")
    after = _ratio(r.get("recent@vacuumed"), before)
    after_raw = _ratio(r.get("recent@compacted"), before)
    launch = _ratio(r.get("launch@vacuumed"), r.get("launch@before"))
    size_share = results.after_vacuum_bytes / int(results.before["log_bytes"])
    basis = (
        "medians of backend CPU time"
        if all(rw.cpu_seconds for rw in r.values())
        else "medians of wall-clock time"
    )
    out = [
        "### Targets",
        "",
        "| target | reached | met |",
        "|---|---|---|",
        f"| \u2265 {ROWS_PER_SECOND:,} log rows compacted per second | {rate:,.0f}/s overall, "
        f"{batch_rate:,.0f}/s median batch | {_met(rate >= ROWS_PER_SECOND)} |",
        f"| rewind cost grows with rows touched, not history length: the `recent` rewind in "
        f"a {growth:.1f}{X} longer history \u2264 {FLAT}{X} | {longer:.2f}{X} ({basis}) "
        f"| {_met(longer <= FLAT)} |",
        f"| \u2026 and after compaction \u2264 {FLAT}{X} before | {after:.2f}{X} after upkeep, "
        f"{after_raw:.2f}{X} right after | {_met(after <= FLAT and after_raw <= FLAT)} |",
        f"| log after compaction and the daemon's upkeep \u2264 {SIZE_SHARE:.0%} of its size "
        f"before | {size_share:.0%} | {_met(size_share <= SIZE_SHARE)} |",
        "",
        f"The `launch` rewind (every row the class touched) read {_undone(r, 'vacuumed')} "
        f"changes after compaction instead of {_undone(r, 'before')} and took {launch:.2f}{X} "
        "its cost before, for the same rows touched.",
        "",
    ]
    if rate < ROWS_PER_SECOND:
        total = results.scanned
        out += [
            f"**Throughput target missed**: {rate:,.0f} log rows per second is "
            f"{rate / ROWS_PER_SECOND:.0%} of the {ROWS_PER_SECOND:,} asked for; the "
            f"{total:,} rows took {results.compact_seconds:.1f} s where the target allows "
            f"{total / ROWS_PER_SECOND:.1f} s.",
        ]
        floor = median([_rate(b.scanned, b.seconds) for b in results.bare_moves])
        if results.bare_moves:
            out.append(
                f"Moving a batch's rows into the archive and nothing else (the floor above) "
                f"runs at {floor:,.0f} rows/s on this machine"
                + (
                    f", itself below the target in this run: moving these rows alone would "
                    f"take {total / floor:.1f} s of the {total / ROWS_PER_SECOND:.1f} s allowed."
                    if floor < ROWS_PER_SECOND
                    else f"; the folding around the move accounts for the other "
                    f"{(1 / rate - 1 / floor) * 1e6:.1f} \u00b5s of the "
                    f"{1e6 / rate:.1f} \u00b5s per row."
                )
            )
        out.append("")
    return out


def _drift(results: Results) -> list[str]:
    """Whether a batch costs more the further compaction is into the log."""
    # A batch spans `batch` ids; some ids are gaps (every captured transaction
    # draws one for its registration), so a full batch scans somewhat fewer.
    full = [b for b in results.batches if b.scanned >= 0.8 * results.plan.batch]
    if len(full) < 4:
        return []
    half = len(full) // 2
    early, late = median([b.seconds for b in full[:half]]), median([b.seconds for b in full[half:]])
    return [
        f"Full batches over the first half of the log took {early:.2f} s (median), over the "
        f"second half {late:.2f} s ({late / early:.2f}{X}), for the same number of rows.",
        "",
    ]


def _undone(rewinds: dict[str, Rewind], stage: str) -> str:
    rewind = rewinds.get(f"launch@{stage}")
    return f"{rewind.changes_undone:,}" if rewind else DASH


def _batches(results: Results) -> list[str]:
    out = [
        "<details><summary>Every batch</summary>",
        "",
        "| batch | scanned | archived | net | s | rows/s |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for n, b in enumerate(results.batches, 1):
        out.append(
            f"| {n} | {b.scanned:,} | {b.archived:,} | {b.net:,} | {b.seconds:.3f} "
            f"| {_rate(b.scanned, b.seconds):,.0f} |"
        )
    return [*out, "", "</details>", ""]


def _machine(facts: machine.Machine) -> list[str]:
    return machine.section(facts)


def _method(results: Results) -> list[str]:
    checkpoint = (
        "after a `CHECKPOINT`"
        if results.checkpoint
        else "(CHECKPOINT was not permitted to this role)"
    )
    return [
        "### Method",
        "",
        "- One scratch database, created for the run and dropped at its end.",
        "- The workload runs as server-side procedures (`bench/sql/compaction_workload.sql`) "
        "that COMMIT after every statement: every transaction is captured as an "
        "application's would be, without a round trip each. History generation runs with "
        "`synchronous_commit = off`; it is set-up, not measured. Measurements run with it on.",
        "- `VACUUM (ANALYZE)` of the database before the first rewinds of each history, as "
        "autovacuum would have done by then. Compaction starts "
        f"{checkpoint} and runs in one session, one `compact_batch` call per transaction; "
        "the time is wall-clock per call, backend CPU time from `/proc/<pid>/schedstat` "
        "when the server runs on this host.",
        "- The floor: before compaction, three batch-sized id ranges (a quarter, half and "
        "three quarters into the log) are each moved into the archive with one "
        "`DELETE … RETURNING` feeding an `INSERT` (`bench/sql/compaction.sql`, `bare_move`), "
        "no folding, and rolled back; the median rate is shown.",
        "- Rewinds run as the owner in transactions that are rolled back, so each repeat "
        "starts from the same state; the warm-up also records the rewind's report "
        "(changes undone, rows deleted, restored or reverted) and the digest.",
        f"- Durations: whole run {results.seconds:,.0f} s, of which building the history "
        f"{results.generate_seconds:,.0f} s (the early `recent` rewinds included).",
        "",
    ]
