"""Commands instructors use: marks, rewind, reset and history."""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Any

import click

from simtrail.cli.app import App
from simtrail.cli.options import dry_run_option, json_option, pass_app, tenant_option
from simtrail.cli.output import cell, emit_json, table
from simtrail.triggers import rewinding

DEFAULT_RESET_MARK = "launch"


@click.group()
def mark() -> None:
    """Named points in a tenant's history (no lock taken, exact under concurrent writes)."""


@mark.command("create")
@tenant_option
@click.argument("name")
@json_option
@pass_app
def mark_create(app: App, tenant: str, name: str, as_json: bool) -> None:
    """Mark the tenant's current state as NAME."""
    with app.connect("mark") as conn:
        created = rewinding.create_mark(conn, tenant, name)
    if as_json:
        emit_json(created)
    else:
        click.echo(
            f"marked {created['name']} for tenant {created['tenant']} at {created['created_at']}"
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
    rows = [{"table": name, **counts} for name, counts in sorted(report["tables"].items())]
    if rows:
        click.echo(table(rows, ["table", "deleted", "restored", "reverted"]))
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


def _rewind(app: App, tenant: str, target: str, dry_run: bool, force: bool, as_json: bool) -> None:
    with app.connect("rewind") as conn:
        report = rewinding.rewind(conn, tenant, target, dry_run=dry_run, force=force)
    _show_report(report, as_json)


@click.command()
@tenant_option
@click.option(
    "--to",
    "target",
    required=True,
    help="mark:NAME, change:ID, or an ISO-8601 time (e.g. 2026-11-26T09:30:00+00:00).",
)
@dry_run_option
@click.option("--force", is_flag=True, help="Overwrite rows written with capture off (drift).")
@json_option
@pass_app
def rewind(app: App, tenant: str, target: str, dry_run: bool, force: bool, as_json: bool) -> None:
    """Put one tenant back to TARGET, keeping every id; other tenants are untouched."""
    _rewind(app, tenant, target, dry_run, force, as_json)


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
@pass_app
def reset(app: App, tenant: str, mark_name: str, dry_run: bool, force: bool, as_json: bool) -> None:
    """Put a tenant back to its launch state (its latest `launch` mark)."""
    _rewind(app, tenant, f"mark:{mark_name}", dry_run, force, as_json)


@click.command()
@tenant_option
@click.option("--table", help="Only this table (bare name means public).")
@click.option(
    "--since", type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"])
)
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@json_option
@pass_app
def history(
    app: App,
    tenant: str,
    table: str | None,
    since: dt.datetime | None,
    limit: int,
    as_json: bool,
) -> None:
    """A tenant's timeline: who changed which row when, with column diffs for updates."""
    with app.connect("history") as conn:
        rows = rewinding.history(conn, tenant, table=table, since=since, limit=limit)
    if as_json:
        emit_json(rows)
        return
    for row in reversed(rows):
        what = row["operation"] + (f" ({row['moved']})" if row["moved"] else "")
        tag = f" [rewind {row['rewind_id']}]" if row["rewind_id"] else ""
        key = json.dumps(row["row_pk"], ensure_ascii=False)
        click.echo(
            f"#{row['id']}  {cell(row['changed_at'])}  {row['who']}  {what} "
            f"{row['table_name']} {key}{tag}"
        )
        for column, (before, after) in row["diff"].items():
            click.echo(f"      {column}: {_short(before)} → {_short(after)}")
    if not rows:
        click.echo("no changes")
        sys.exit(0)


def _short(value: Any, width: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    return text if len(text) <= width else text[: width - 1] + "…"


def register(group: click.Group) -> None:
    for command in (mark, rewind, reset, history):
        group.add_command(command)
