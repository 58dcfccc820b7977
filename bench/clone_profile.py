"""Where simtrail's clone spends its time: one more run with every function
timed (``track_functions``) and every statement explained (``auto_explain``)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import psycopg

from bench.clone import Prepared, q
from simtrail.db import connect


@dataclass
class Statement:
    text: str
    calls: int
    ms: float


@dataclass
class Profile:
    seconds: float  # the profiled run, instrumentation included
    functions: list[dict[str, Any]]  # pg_stat_xact_user_functions, by self time
    statements: list[Statement]  # statements of 1 ms or more, grouped by text
    plans: list[dict[str, Any]]  # the slowest few, as auto_explain gave them
    loops: Loops


@dataclass
class Loops:
    """Nested loops whose join filter threw away far more rows than it kept:
    the planner expected few rows on both sides, and the work grows with the
    product of the two (the square of the class size)."""

    statements: int = 0
    ms: float = 0.0  # those statements' time
    kept: int = 0
    removed: int = 0
    estimated: int = 0  # the rows the planner expected those joins to give


def profile(p: Prepared, timeout_s: float) -> Profile | None:
    """None when the settings are refused (not a superuser) or the run is cancelled."""
    notices: list[str] = []
    with connect(p.dsn, "bench clone profile", statement_timeout_ms=0) as conn:
        try:
            with conn.transaction(force_rollback=True):
                conn.execute(q("profile_on"))
        except psycopg.errors.InsufficientPrivilege:
            return None
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        try:
            with conn.transaction(force_rollback=True):
                row = conn.execute(q("new_tenant"), {"name": "bench clone (profile)"}).fetchone()
                assert row is not None
                conn.execute(q("profile_on"))
                conn.execute(q("timeout"), {"ms": str(int(timeout_s * 1000))})
                started = time.perf_counter()
                conn.execute(q("clone"), {"source": p.template, "target": str(row["id"])})
                seconds = time.perf_counter() - started
                functions = [dict(r) for r in conn.execute(q("function_times")).fetchall()]
        except psycopg.errors.QueryCanceled:
            return None
    return parse(seconds, functions, notices)


def parse(seconds: float, functions: list[dict[str, Any]], notices: list[str]) -> Profile:
    by_text: dict[str, Statement] = {}
    plans: list[dict[str, Any]] = []
    loops = Loops()
    for notice in notices:
        head, _, body = notice.partition("plan:")
        if not head.startswith("duration:") or not body.strip():
            continue
        try:
            ms = float(head.split()[1])
            doc = json.loads(body)
        except (ValueError, IndexError):
            continue
        text = " ".join(str(doc.get("Query Text", "")).split())
        if text.startswith("SELECT simtrail.clone_tenant("):
            continue  # the whole run
        entry = by_text.setdefault(text, Statement(text, 0, 0.0))
        entry.calls += 1
        entry.ms += ms
        _count_loops(doc.get("Plan", {}), loops, ms)
        plans.append(
            {
                "ms": ms,
                "text": text,
                "plan": doc.get("Plan", {}),
                "triggers": doc.get("Triggers", []),
            }
        )
    plans.sort(key=lambda d: -float(d["ms"]))
    # A function's statements and the call around them are both logged: show
    # the statements' plans, not the bare calls (a Function Scan or a Result).
    plans = [d for d in plans if not _bare_call(d["plan"])]
    statements = sorted(by_text.values(), key=lambda s: -s.ms)
    return Profile(seconds, functions, statements, plans[:5], loops)


def _count_loops(plan: Any, loops: Loops, ms: float) -> None:
    found = False
    stack = [plan]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        stack.extend(node.get("Plans", []))
        kept = int(node.get("Actual Rows", 0)) * int(node.get("Actual Loops", 1))
        removed = int(node.get("Rows Removed by Join Filter", 0))
        # Small joins done this way are cheap: only a loop that compared
        # many pairs, far more than it kept, is worth naming.
        if node.get("Node Type") == "Nested Loop" and removed > max(10 * kept, 10_000):
            loops.kept += kept
            loops.removed += removed
            loops.estimated += int(node.get("Plan Rows", 0))
            found = True
    if found:
        loops.statements += 1
        loops.ms += ms


def _bare_call(plan: Any) -> bool:
    return (
        isinstance(plan, dict)
        and plan.get("Node Type") in ("Function Scan", "Result")
        and not plan.get("Plans")
    )


# --- rendering ---------------------------------------------------------------


def render(profiled: list[tuple[int, float, Profile]]) -> list[str]:
    """Markdown for (template rows, median unprofiled seconds, profile) per size."""
    if not profiled:
        return []
    out = [
        "### Where simtrail's time goes",
        "",
        "Each size's clone once more, rolled back, with `track_functions = all` (time per "
        "PL/pgSQL function, from `pg_stat_xact_user_functions`) and `auto_explain` (every "
        "statement of 1 ms or more, nested ones included, with `log_analyze` and "
        "`log_triggers`: a statement's per-row foreign-key checks add up under its "
        "triggers). The instrumentation makes the run slower; its time is given. Sizes "
        "whose clone takes more than half the time a run may take are not profiled.",
        "",
    ]
    for rows, median_s, p in profiled:
        out += _one(rows, median_s, p)
    return out


def _one(rows: int, median_s: float, p: Profile) -> list[str]:
    total_self = sum(float(f["self_ms"]) for f in p.functions) or float("nan")
    capture = [f for f in p.functions if str(f["name"]).startswith("simtrail.capture_")]
    others = [f for f in p.functions if f not in capture]
    cap_ms = sum(float(f["self_ms"]) for f in capture)
    out = [f"#### {rows:,} rows", "", *_loops(p)]
    out += [
        f"Profiled run {p.seconds:.3f} s (unprofiled median {median_s:.3f} s). Self time per "
        "function (its own statements, without the functions it calls):",
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
        "Statements of 1 ms or more by total time (inclusive: a statement's time includes "
        "the triggers and functions it fires, whose statements are counted again):",
        "",
        "| ms | calls | statement |",
        "|---:|---:|---|",
    ]
    for s in p.statements[:10]:
        out.append(f"| {s.ms:,.1f} | {s.calls:,} | `{_short(s.text, 160)}` |")
    out += ["", f"<details><summary>The slowest plans at {rows:,} rows</summary>", ""]
    for plan in p.plans:
        out += [
            f"{float(plan['ms']):,.1f} ms: `{_short(str(plan['text']), 240)}`",
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


def _loops(p: Profile) -> list[str]:
    n = p.loops
    if not n.statements:
        return []
    return [
        f"**Quadratic joins.** {n.statements} statement{'s' if n.statements != 1 else ''} ran "
        f"nested loops whose join filter compared {n.removed + n.kept:,} pairs of rows to keep "
        f"{n.kept:,} ({n.removed / max(n.kept, 1):,.0f} discarded for each kept): the "
        f"planner expected {n.estimated:,} rows from those joins, so it joined by scanning "
        "one side once for every row of the other. They took "
        f"{n.ms / 1000:,.3f} s of the profiled run's {p.seconds:,.3f} s; that work grows "
        "with the square of the class size.",
        "",
    ]


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
        f"{'  ' * depth}{what}: estimated {node.get('Plan Rows', '?')} rows, actual "
        f"{node.get('Actual Rows', '?')} x {node.get('Actual Loops', '?')} loops, "
        f"{float(node.get('Actual Total Time', 0)):,.1f} ms"
    )
    for key in ("Rows Removed by Join Filter", "Rows Removed by Filter"):
        if node.get(key):
            line += f"; {key.lower()} {int(node[key]):,}"
    lines = [line]
    for child in node.get("Plans", []):
        lines += _plan_lines(child, depth + 1)
    return lines
