"""Commands that end a class or look back at it: purge, and diff (since a target, or
against the template it was cloned from)."""

from __future__ import annotations

import json
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
from simtrail.cli.output import emit_json, per_table, short, table
from simtrail.cli.rewind_commands import typed_target
from simtrail.triggers import diffing, purging


def _key(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


@click.command()
@tenant_option
@dry_run_option
@json_option
@names_database
@pass_app
def purge(app: App, tenant: str, dry_run: bool, as_json: bool) -> None:
    """Delete every configured row of one class, children first, in one transaction.

    The delete is captured like any write: a rewind to a mark taken before it
    brings the class back. Refused, writing nothing, when a row of another class
    references one of the class's rows.
    """
    with app.connect("purge") as conn:
        report = purging.purge(conn, tenant, dry_run=dry_run)
    if as_json:
        emit_json(report)
        return
    per_table(report["tables"], ["deleted"])
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"{verb} {report['totals']['deleted']} rows of tenant {report['tenant']}")
    for effect in report["untracked"]:
        click.echo(
            f"{'would ' if dry_run else ''}{effect['on_delete']} {effect['rows']} row(s) of"
            f" {effect['table']} ({', '.join(effect['columns'])} → {effect['references']},"
            " the application's own foreign key)"
        )
    if dry_run:
        click.echo("dry run: nothing was changed")
    elif report["tables"]:
        click.echo(
            "to undo: simtrail rewind --tenant T --to mark:NAME (a mark taken before the purge)"
        )


def _show_since(report: dict[str, Any]) -> None:
    resolved = report["resolved"]
    click.echo(
        f"tenant {report['tenant']} since {report['target']}"
        f" ({resolved.get('resolved_by')}, {resolved.get('at')})"
    )
    click.echo(f"precision: {report['precision']}")
    for gap in report["capture_gaps"]:
        click.echo(
            f"warning: capture of {gap['table']} was off from {gap['from']} to {gap['to']};"
            " writes then are not in this diff"
        )
    per_table(report["tables"], ["inserted", "deleted", "changed"])
    totals = report["totals"]
    click.echo(
        f"{report['changes_since']} changes logged since the target; rows inserted:"
        f" {totals['inserted']}, deleted: {totals['deleted']}, changed: {totals['changed']}"
    )
    if report["rows_drifted"]:
        click.echo(
            f"note: {report['rows_drifted']} row(s) differ from their last logged image"
            " (written with capture off); shown as they are now"
        )
    if report["changed"]:
        click.echo("\nchanged:")
    for row in report["changed"]:
        click.echo(f"  {row['table']} {_key(row['key'])}")
        for column, values in sorted(row["columns"].items()):
            click.echo(f"      {column}: {short(values['before'])} → {short(values['after'])}")
    for kind, moved, where in (("inserted", "moved_from", "from"), ("deleted", "moved_to", "to")):
        if report[kind]:
            click.echo(f"\n{kind}:")
        for row in report[kind]:
            note = f" (moved {where} tenant {row[moved] or 'none'})" if moved in row else ""
            click.echo(f"  {row['table']} {_key(row['key'])}{note}")


def _show_against(report: dict[str, Any]) -> None:
    copy = report["copy"]
    click.echo(
        f"tenant {report['tenant']} against template {report['template']}"
        f" (clone {copy['id']} of {copy['created_at']})"
    )
    rows = [
        {
            "table": name,
            "only in clone": c["only_in_clone"],
            "only in template": c["only_in_template"],
            "differ": c["differ"],
            "same": c["same"],
            "ignored (made by the copy)": ", ".join(c["ignored_columns"]),
        }
        for name, c in sorted(report["tables"].items())
    ]
    if rows:
        click.echo(
            table(
                rows,
                [
                    "table",
                    "only in clone",
                    "only in template",
                    "differ",
                    "same",
                    "ignored (made by the copy)",
                ],
            )
        )
    totals = report["totals"]
    click.echo(
        f"{totals['differ']} rows differ, {totals['only_in_clone']} only in the clone,"
        f" {totals['only_in_template']} only in the template"
    )
    if report["differ"]:
        click.echo("\ndiffer (template → clone):")
    for row in report["differ"]:
        click.echo(f"  {row['table']} {_key(row['template_key'])} → {_key(row['clone_key'])}")
        for column, values in sorted(row["columns"].items()):
            expected = (
                f" (the clone's key for it: {short(values['expected'])})"
                if "expected" in values
                else ""
            )
            click.echo(
                f"      {column}: {short(values['template'])} → {short(values['clone'])}{expected}"
            )
    for kind in ("only_in_clone", "only_in_template"):
        if report[kind]:
            click.echo(f"\n{kind.replace('_', ' ')}:")
        for row in report[kind]:
            click.echo(f"  {row['table']} {_key(row['key'])} ({row['why']})")


@click.command()
@tenant_option
@click.option(
    "--to",
    "target",
    help="Since mark:NAME, change:ID or an ISO-8601 time: what the class did since then.",
)
@click.option(
    "--against",
    "template",
    help="The template the tenant was cloned from: rows paired through the clone's key map.",
)
@tz_option
@json_option
@pass_app
def diff(
    app: App,
    tenant: str,
    target: str | None,
    template: str | None,
    tz: str | None,
    as_json: bool,
) -> None:
    """What changed in a class: since --to TARGET, or against --against TEMPLATE.

    A read: nothing is written and no row is locked. Text shows counts per table,
    then each row; --json gives every row with its values.
    """
    if (target is None) == (template is None):
        raise click.UsageError("give exactly one of --to TARGET and --against TEMPLATE")
    with app.connect("diff") as conn:
        if target is not None:
            report = diffing.since(conn, tenant, typed_target(conn, target, tz))
        else:
            assert template is not None
            report = diffing.against(conn, tenant, template)
    if as_json:
        emit_json(report)
    elif target is not None:
        _show_since(report)
    else:
        _show_against(report)


def register(group: click.Group) -> None:
    for command in (purge, diff):
        group.add_command(command)
