"""summary.html: the export for a person, in one file that loads nothing.

The counters grow with the number of tenants, tables, actors and hours, not
with the number of changes, so the export's memory stays flat.
"""

from __future__ import annotations

import datetime as dt
import html as h
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from simtrail.export.fileformat import Change


def actor_label(actor: Any) -> str:
    """Who, as an instructor would name them: email, then JWT subject, then the rest."""
    if not isinstance(actor, dict):
        return "(unknown)"
    for key in ("email", "sub", "actor", "session_user"):
        if actor.get(key):
            return str(actor[key])
    return "(unknown)"


@dataclass
class Stats:
    lines: int = 0
    stubs: int = 0
    first: dt.datetime | None = None
    last: dt.datetime | None = None
    per_table_op: Counter[tuple[str, str]] = field(default_factory=Counter)
    per_tenant: Counter[str] = field(default_factory=Counter)
    per_actor: Counter[str] = field(default_factory=Counter)
    per_hour: Counter[dt.datetime] = field(default_factory=Counter)
    # (actor, table) -> [count, first, last]
    activity: dict[tuple[str, str], list[Any]] = field(default_factory=dict)
    # Changes whose hash the writer recomputed and found equal to its seal,
    # and stubs of changes retention dropped, carried by a held seal.
    recomputed: int = 0
    held: int = 0

    def add(self, tenant: str | None, change: Change, at: dt.datetime) -> None:
        self.lines += 1
        self.per_table_op[(change.table_name, change.operation)] += 1
        self.per_tenant["(no tenant)" if tenant is None else tenant] += 1
        who = actor_label(change.actor)
        self.per_actor[who] += 1
        at = at.astimezone(dt.UTC)
        self.per_hour[at.replace(minute=0, second=0, microsecond=0)] += 1
        # Comparisons, not min()/max() calls, and no list made to be dropped:
        # this runs once per change.
        if self.first is None or at < self.first:
            self.first = at
        if self.last is None or at > self.last:
            self.last = at
        key = (who, change.table_name)
        entry = self.activity.get(key)
        if entry is None:
            self.activity[key] = [1, at, at]
        else:
            entry[0] += 1
            if at < entry[1]:
                entry[1] = at
            if at > entry[2]:
                entry[2] = at

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for (table, op), n in sorted(self.per_table_op.items()):
            out.setdefault(table, {})[op] = n
        return out

    def time_range(self) -> dict[str, str | None]:
        def text(at: dt.datetime | None) -> str | None:
            return None if at is None else at.isoformat().replace("+00:00", "Z")
        return {"first": text(self.first), "last": text(self.last)}


_STYLE = """body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:2px 8px}
th{background:#f3f3f3;text-align:left}td.n{text-align:right}.ok{color:#063}
svg rect{fill:#4a78b0}"""


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{h.escape(x)}</th>" for x in headers)
    body = "".join(
        "<tr>" + "".join(
            f'<td class="n">{v}</td>' if isinstance(v, int) else f"<td>{h.escape(str(v))}</td>"
            for v in row) + "</tr>"
        for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _chart(per_hour: Counter[dt.datetime]) -> str:
    if not per_hour:
        return "<p>No changes.</p>"
    hours = sorted(per_hour)
    start, end = hours[0], hours[-1]
    span = int((end - start).total_seconds() // 3600) + 1
    # One bar per hour; a long history is drawn in wider buckets.
    step = max(1, -(-span // 240))
    buckets: Counter[int] = Counter()
    for hour, n in per_hour.items():
        buckets[int((hour - start).total_seconds() // 3600) // step] += n
    width, top = max(len(range(0, span, step)), 1), max(buckets.values())
    bars = "".join(
        f'<rect x="{i * 4}" y="{120 - 120 * n // top}" width="3" height="{120 * n // top}">'
        f"<title>{h.escape((start + dt.timedelta(hours=i * step)).isoformat())}: {n}</title>"
        "</rect>" for i, n in sorted(buckets.items()))
    return (f'<svg width="{width * 4}" height="120" role="img" aria-label="changes per hour">'
            f"{bars}</svg><p>{start.isoformat()} to {end.isoformat()},"
            f" {step} hour(s) a bar.</p>")


@dataclass(frozen=True)
class Source:
    """Where the export came from and how it is vouched for, for the status line."""

    database: str | None
    system_identifier: str | None
    key_id: str | None
    # The previous export's record hash, with --after.
    continues: str | None


def status(stats: Stats, chains: list[dict[str, Any]], source: Source) -> str:
    """The verification status: what the writer checked, from its own counts."""
    parts = [
        f"Checked when this export was written: {stats.recomputed} change(s) in"
        f" {len(chains)} chain(s) were re-encoded from the log and the archive, and each"
        " hash matched its seal (the export stops at the first one that does not, so this"
        " page exists only if all matched)."
    ]
    if stats.held:
        parts.append(f" {stats.held} change(s) that retention dropped are carried by the seals"
                     " their prune records hold.")
    if source.continues is not None:
        parts.append(" Each chain continues from the head of the previous export, whose"
                     f" record hash is <code>{h.escape(source.continues)}</code>.")
    parts.append(f" The manifest is signed with key <code>{h.escape(source.key_id)}</code>."
                 if source.key_id is not None else
                 " The manifest is not signed: nothing outside these files vouches for them.")
    parts.append(f" Database <code>{h.escape(str(source.database))}</code>, system identifier"
                 f" <code>{h.escape(str(source.system_identifier))}</code>.")
    parts.append(" Check these files again, with no database, by <code>simtrail verify"
                 " DIR</code>; this page is covered by the manifest's file hashes.")
    return '<p class="ok">Verification status. ' + "".join(parts) + "</p>"


def html(stats: Stats, chains: list[dict[str, Any]], filters: dict[str, Any],
         source: Source) -> str:
    shown = {k: v for k, v in filters.items() if v not in (None, [], "jsonl")}
    chain_rows = [["(no tenant)" if c["tenant_id"] is None else c["tenant_id"], c["first_seq"],
                   c["last_seq"], c["lines"], c["stubs"]] for c in chains]
    activity = [[who, table, n, first.isoformat(), last.isoformat()]
                for (who, table), (n, first, last) in sorted(stats.activity.items())]
    return "".join([
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>simtrail export</title>",
        f"<style>{_STYLE}</style></head><body><h1>simtrail export</h1>",
        f"<p>{stats.lines} changes and {stats.stubs} stubs (changes the filters leave out,"
        " kept as sequence number and hash so the chain stays checkable).</p>",
        f"<p>Filters: {h.escape(str(shown) if shown else 'none')}.</p>",
        status(stats, chains, source),
        "<h2>Chains</h2>", _table(["tenant", "first seq", "last seq", "lines", "stubs"],
                                  chain_rows),
        "<h2>Changes per tenant</h2>",
        _table(["tenant", "changes"], [[k, n] for k, n in sorted(stats.per_tenant.items())]),
        "<h2>Changes per table and operation</h2>",
        _table(["table", "operation", "changes"],
               [[t, o, n] for (t, o), n in sorted(stats.per_table_op.items())]),
        "<h2>Changes per actor</h2>",
        _table(["actor", "changes"], [[k, n] for k, n in sorted(stats.per_actor.items())]),
        "<h2>Changes per hour (UTC)</h2>", _chart(stats.per_hour),
        "<h2>Activity: who charted what, when</h2>",
        _table(["actor", "table", "changes", "first (UTC)", "last (UTC)"], activity),
        "</body></html>\n",
    ])
