"""Commands that copy rows between classes: clone (launch) and copy (duplicate a patient)."""

from __future__ import annotations

import json
from typing import Any

import click

from simtrail.cli.app import App
from simtrail.cli.options import dry_run_option, json_option, names_database, pass_app, tz_option
from simtrail.cli.output import emit_json, table
from simtrail.cli.rewind_commands import typed_target
from simtrail.errors import SimtrailError
from simtrail.triggers import copying


def show_copy(report: dict[str, Any], as_json: bool, source: str | None = None) -> None:
    """A copy's report: per table rows, references remapped, values generated."""
    if as_json:
        emit_json(report)
        return
    rows = [
        {
            "table": name,
            "rows": counts["rows"],
            "references remapped": counts.get("references_remapped", 0),
            "values generated": ", ".join(
                f"{column} {n}" for column, n in sorted(counts["values_generated"].items())
            ),
        }
        for name, counts in sorted(report["tables"].items())
    ]
    if rows:
        click.echo(table(rows, ["table", "rows", "references remapped", "values generated"]))
    totals = report["totals"]
    verb = "would copy" if report["dry_run"] else "copied"
    click.echo(
        f"{verb} {totals['rows']} rows from {source or 'tenant ' + str(report['from'])}"
        f" to tenant {report['to']},"
        f" remapping {totals['references_remapped']} references"
        + (f"; marked {report['mark']}" if report.get("mark") and not report["dry_run"] else "")
        + (f" (copy {report['copy_id']})" if report.get("copy_id") else "")
    )
    if report["dry_run"]:
        click.echo("dry run: nothing was changed")


@click.command()
@click.option("--from", "source", required=True, help="The tenant to copy (a template class).")
@click.option("--to", "target", required=True, help="The new, empty tenant (its key must exist).")
@click.option(
    "--at",
    help="Copy the source as it was at mark:NAME, change:ID or an ISO-8601 time"
    " (read from the log; the source is not changed). Default: as it is now.",
)
@click.option(
    "--mark",
    "mark_name",
    default="launch",
    show_default=True,
    help="The mark taken on the new tenant at the end, for `simtrail reset`.",
)
@tz_option
@dry_run_option
@json_option
@names_database
@pass_app
def clone(
    app: App,
    source: str,
    target: str,
    at: str | None,
    mark_name: str,
    tz: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Launch a class: copy every configured row of --from into the empty --to.

    Each row gets a new key, references into the copy are remapped, copy rules
    apply, other classes are untouched; one transaction, refused whole or done whole.
    """
    with app.connect("clone") as conn:
        resolved_at = typed_target(conn, at, tz) if at is not None else None
        report = copying.clone(
            conn, source, target, at=resolved_at, dry_run=dry_run, mark=mark_name
        )
    show_copy(report, as_json)


def _key(text: str) -> dict[str, Any]:
    try:
        key = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SimtrailError(f"--key is not JSON ({exc.msg}): {text!r}") from None
    if not isinstance(key, dict) or not key:
        raise SimtrailError('--key is a JSON object of the primary key, e.g. {"id": "…"}')
    return key


@click.command()
@click.option("--table", "table_name", required=True, help="The table of the row to copy.")
@click.option("--key", "key_text", required=True, help='Its primary key as JSON: {"id": "…"}.')
@click.option("--to-tenant", "target", required=True, help="The tenant to copy it into.")
@click.option(
    "--only", multiple=True, metavar="CATEGORY", help="Copy only tables of these config categories."
)
@click.option(
    "--skip", multiple=True, metavar="CATEGORY", help="Leave out tables of these categories."
)
@dry_run_option
@json_option
@names_database
@pass_app
def copy(
    app: App,
    table_name: str,
    key_text: str,
    target: str,
    only: tuple[str, ...],
    skip: tuple[str, ...],
    dry_run: bool,
    as_json: bool,
) -> None:
    """Duplicate a row (a patient) and every configured row that references it.

    References are followed through foreign keys and declared references,
    transitively; the copy gets new keys and the copy rules, like a clone.
    """
    key = _key(key_text)
    with app.connect("copy") as conn:
        report = copying.copy_subtree(
            conn, table_name, key, target, only=only, skip=skip, dry_run=dry_run
        )
    show_copy(report, as_json)
    if not as_json and report.get("new_key") and not report["dry_run"]:
        click.echo(f"new key: {json.dumps(report['new_key'])}")


def register(group: click.Group) -> None:
    for command in (clone, copy):
        group.add_command(command)
