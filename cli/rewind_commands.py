"""Commands instructors use: marks, rewind, reset and history."""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Any

import click

from simtrail.cli.app import App
from simtrail.cli.options import (
    dry_run_option,
    json_option,
    names_database,
    pass_app,
    tenant_option,
    tz_option,
)
from simtrail.cli.output import cell, emit_json, per_table, short, table
from simtrail.db import Conn
from simtrail.times import EXAMPLE, NotATimeError, parse_time, zone_info
from simtrail.triggers import rewinding

DEFAULT_RESET_MARK = "launch"


@click.group()
def mark() -> None:
    """Named points in a tenant's history (no lock taken, exact under concurrent writes)."""


@mark.command("create")
@tenant_option
@click.argument("name")
@click.option(
    "--replace", is_flag=True, help="Move NAME here: delete the tenant's older mark(s) of NAME."
)
@json_option
@names_database
@pass_app
def mark_create(app: App, tenant: str, name: str, replace: bool, as_json: bool) -> None:
    """Mark the tenant's current state as NAME (refused when NAME exists, unless --replace).

    A class with no rows yet can be marked: its launch mark is taken before anything is charted.
    """
    with app.connect("mark") as conn:
        created = rewinding.create_mark(conn, tenant, name, replace=replace)
    if as_json:
        emit_json(created)
    else:
        replaced = created.get("replaced")
        click.echo(
            f"marked {created['name']} for tenant {created['tenant']} at {created['created_at']}"
            + (f" (replaced {replaced} older mark(s) of that name)" if replaced else "")
        )


@mark.command("list")
@tenant_option
@json_option
@pass_app
def mark_list(app: App, tenant: str, as_json: bool) -> None:
    """The tenant's marks, oldest first."""
    with app.connect("mark") as conn:
        marks = rewinding.list_marks(conn, tenant)
    if as_json:
        emit_json(marks)
        return
    for m in marks:
        m["by"] = rewinding.who(m["created_by"])
    click.echo(table(marks, ["id", "name", "created_at", "by"]))


@mark.command("delete")
@tenant_option
@click.argument("name")
@names_database
@pass_app
def mark_delete(app: App, tenant: str, name: str) -> None:
    """Delete the tenant's marks called NAME."""
    with app.connect("mark") as conn:
        count = rewinding.delete_mark(conn, tenant, name)
    click.echo(f"deleted {count} mark(s) named {name}")


def _show_report(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(report)
        return
    resolved = report["resolved"]
    verb = "would" if report["dry_run"] else "did"
    click.echo(
        f"tenant {report['tenant']} → {report['target']} "
        f"({resolved['resolved_by']}, {resolved.get('at')})"
    )
    click.echo(f"precision: {resolved['precision']}")
    per_table(report["tables"], ["deleted", "restored", "reverted"])
    totals = report["totals"]
    click.echo(
        f"{verb} undo {report['changes_undone']} changes: delete {totals['deleted']}, "
        f"restore {totals['restored']}, revert {totals['reverted']} rows"
        + (
            f" in {report['duration_ms']} ms ({report['mode']} mode)"
            if not report["dry_run"]
            else ""
        )
    )
    moved_in = report.get("moved_in") or {}
    if moved_in.get("deleted"):
        click.echo(
            f"{'would delete' if report['dry_run'] else 'deleted'} {moved_in['deleted']} row(s)"
            " that entered from other tenants (--force)"
        )
    if moved_in.get("returned"):
        click.echo(
            f"{'would return' if report['dry_run'] else 'returned'} {moved_in['returned']} row(s)"
            " that entered from no tenant to no tenant"
        )
    if report["rows_drifted"]:
        click.echo(f"overwrote {report['rows_drifted']} drifted row(s) (--force)")
    if report["dry_run"]:
        click.echo("dry run: nothing was changed")


def read_time(conn: Conn, text: str, tz: str | None) -> dt.datetime:
    """A time the user typed, through the one parser; warns when a zone was assumed."""
    if tz is not None:
        zone_info(tz)
    parsed = parse_time(text, tz if tz is not None else lambda: rewinding.session_zone(conn))
    if (warning := parsed.warning()) is not None:
        click.echo(warning, err=True)
    return parsed.value


def typed_target(conn: Conn, target: str, tz: str | None) -> str:
    """A target as typed (mark:, change: or a time) in the form the SQL side reads."""
    if target.startswith(("mark:", "change:")):
        return target
    try:
        return read_time(conn, target, tz).isoformat()
    except NotATimeError:
        raise NotATimeError(
            f"{target.strip()!r} is not a target: use mark:NAME, change:ID or an"
            f" ISO-8601 time (e.g. {EXAMPLE})"
        ) from None


def _rewind(
    app: App,
    tenant: str,
    target: str,
    dry_run: bool,
    force: bool,
    as_json: bool,
    *,
    nearest: bool = False,
    tz: str | None = None,
) -> None:
    with app.connect("rewind") as conn:
        target = typed_target(conn, target, tz)
        report = rewinding.rewind(
            conn, tenant, target, dry_run=dry_run, force=force, nearest=nearest
        )
    _show_report(report, as_json)


@click.command()
@tenant_option
@click.option(
    "--to",
    "target",
    required=True,
    help="mark:NAME, change:ID, or an ISO-8601 time (e.g. 2026-11-26T09:30:00+00:00).",
)
@click.option(
    "--nearest",
    is_flag=True,
    help="For a time no tick or mark resolves exactly: use the nearest earlier cut"
    " (the report's precision says how far back it is).",
)
@tz_option
@dry_run_option
@click.option("--force", is_flag=True, help="Overwrite rows written with capture off (drift).")
@json_option
@names_database
@pass_app
def rewind(
    app: App,
    tenant: str,
    target: str,
    nearest: bool,
    tz: str | None,
    dry_run: bool,
    force: bool,
    as_json: bool,
) -> None:
    """Put one tenant back to TARGET, keeping every id; other tenants are untouched."""
    _rewind(app, tenant, target, dry_run, force, as_json, nearest=nearest, tz=tz)


@click.command()
@tenant_option
@click.option(
    "--mark",
    "mark_name",
    envvar="SIMTRAIL_RESET_MARK",
    default=DEFAULT_RESET_MARK,
    show_default=True,
    help="The mark to reset to (its latest instance).",
)
@dry_run_option
@click.option("--force", is_flag=True, help="Overwrite rows written with capture off (drift).")
@json_option
@names_database
@pass_app
def reset(app: App, tenant: str, mark_name: str, dry_run: bool, force: bool, as_json: bool) -> None:
    """Put a tenant back to its launch state (its latest `launch` mark)."""
    _rewind(app, tenant, f"mark:{mark_name}", dry_run, force, as_json)


@click.command()
@tenant_option
@click.option("--table", help="Only this table (bare name means public).")
@click.option("--since", metavar="TIME", help="Only changes at or after TIME (ISO-8601).")
@tz_option
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@json_option
@pass_app
def history(
    app: App,
    tenant: str,
    table: str | None,
    since: str | None,
    tz: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """A tenant's timeline, oldest first: who changed which row when, and its marks.

    Text and --json list the same entries in the same order (the newest LIMIT).
    """
    with app.connect("history") as conn:
        start = read_time(conn, since, tz) if since is not None else None
        rows = rewinding.history(conn, tenant, table=table, since=start, limit=limit)
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        if row["kind"] == "mark":
            name = json.dumps(row["name"], ensure_ascii=False)
            click.echo(f"mark {name}  {cell(row['created_at'])}  {row['who']}")
            continue
        what = row["operation"] + (f" ({row['moved']})" if row["moved"] else "")
        tag = f" [rewind {row['rewind_id']}]" if row["rewind_id"] else ""
        key = json.dumps(row["row_pk"], ensure_ascii=False)
        click.echo(
            f"#{row['id']}  {cell(row['changed_at'])}  {row['who']}  {what} "
            f"{row['table_name']} {key}{tag}"
        )
        for column, (before, after) in row["diff"].items():
            click.echo(f"      {column}: {short(before)} → {short(after)}")
    if not rows:
        click.echo("no changes")
        sys.exit(0)


def register(group: click.Group) -> None:
    for command in (mark, rewind, reset, history):
        group.add_command(command)
