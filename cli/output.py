"""Output for people (aligned tables) and for scripts (--json)."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import click

from simtrail.cli.app import App


def _default(value: object) -> object:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def emit_json(data: object) -> None:
    """A command's JSON result on stdout.

    A command that names its database (see App.announce) says which one in a
    `connection` field of its object, not on stderr.
    """
    app = _app()
    if app is not None and app.announce and app.target and isinstance(data, dict):
        data = {**data, "connection": app.target}
    click.echo(json.dumps(data, default=_default, indent=2, ensure_ascii=False))


def emit_error(message: str, exit_code: int, kind: str) -> None:
    """A failure on stderr: one line of text, or one line holding a JSON object."""
    app = _app()
    if app is not None and app.as_json:
        error: dict[str, object] = {"message": message, "kind": kind, "exit_code": exit_code}
        if app.target:
            error["connection"] = app.target
        click.echo(json.dumps({"error": error}, default=_default, ensure_ascii=False), err=True)
    else:
        click.echo(f"simtrail: error: {message}", err=True)


def _app() -> App | None:
    ctx = click.get_current_context(silent=True)
    return ctx.find_object(App) if ctx is not None else None


def cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, list | tuple):
        return ", ".join(cell(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, default=_default, ensure_ascii=False)
    return str(value)


def table(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """An aligned plain-text table with a header line."""
    body = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in body)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in body]
    return "\n".join(lines)


def short(value: Any, width: int = 60) -> str:
    """A value on one line, cut to `width`: strings as they are, the rest as JSON."""
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    return text if len(text) <= width else text[: width - 1] + "…"


def per_table(tables: Mapping[str, Mapping[str, Any]], columns: Sequence[str]) -> None:
    """A report's counts per table, aligned, tables sorted; nothing when there are none."""
    rows = [{"table": name, **counts} for name, counts in sorted(tables.items())]
    if rows:
        click.echo(table(rows, ["table", *columns]))
