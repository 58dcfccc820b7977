"""`simtrail config ref …` and `simtrail config rule …`: references without a
foreign key, and what a copy writes into a column."""

from __future__ import annotations

from typing import Any

import click

from simtrail.cli.app import App
from simtrail.cli.options import json_option, names_database, pass_app
from simtrail.cli.output import emit_json, table
from simtrail.triggers import refs


@click.group("ref")
def ref_group() -> None:
    """Declared references: columns holding another table's key with no foreign key.

    Copies remap them like foreign keys. TABLE.COLUMN may be schema-qualified
    (public.bowel_records.patient_id); quote identifiers as in SQL.
    """


@ref_group.command("add")
@click.argument("column", metavar="TABLE.COLUMN")
@click.option(
    "--references",
    "references",
    required=True,
    metavar="TABLE[.COLUMN]",
    help="The table whose key COLUMN holds; its primary key unless a unique column is named.",
)
@json_option
@names_database
@pass_app
def ref_add(app: App, column: str, references: str, as_json: bool) -> None:
    """Declare that TABLE.COLUMN holds keys of another captured table (replaces an older one)."""
    with app.connect("config") as conn:
        stored = refs.add_reference(conn, column, references)
    if as_json:
        emit_json(stored)
        return
    how = stored["key"] + (", held as text" if stored["as_text"] else "")
    click.echo(
        f"declared {stored['table_name']}.{stored['column_name']} → "
        f"{stored['ref_table']}.{stored['ref_column']} ({how})"
    )
    if stored["replaced"]:
        old = stored["replaced"]
        click.echo(f"replaced the reference to {old['ref_table']}.{old['ref_column']}")
    click.echo(f"{stored['matched']} value(s) find their row, {stored['dangling']} do not")


@ref_group.command("list")
@json_option
@pass_app
def ref_list(app: App, as_json: bool) -> None:
    """Every declared reference, and why one no longer holds."""
    with app.connect("config") as conn:
        rows = refs.list_references(conn)
    if as_json:
        emit_json(rows)
        return
    click.echo(
        table(rows, ["table_name", "column_name", "ref_table", "ref_column", "added_by", "problem"])
    )


@ref_group.command("remove")
@click.argument("column", metavar="TABLE.COLUMN")
@json_option
@names_database
@pass_app
def ref_remove(app: App, column: str, as_json: bool) -> None:
    """Forget the declared reference of TABLE.COLUMN."""
    with app.connect("config") as conn:
        removed = refs.remove_reference(conn, column)
    if as_json:
        emit_json(removed)
        return
    click.echo(
        f"removed {removed['table_name']}.{removed['column_name']} → "
        f"{removed['ref_table']}.{removed['ref_column']}"
    )


@click.group("rule")
def rule_group() -> None:
    """Column rules for copies: keep, default, null or sql:EXPR.

    An expression is evaluated per copied row as `SELECT (EXPR) FROM <source
    rows> AS s`; it may name the source row's columns, bare or as s.col.
    """


def _rule_text(stored: dict[str, Any]) -> str:
    return f"sql:{stored['expression']}" if stored["rule"] == "sql" else str(stored["rule"])


@rule_group.command("set")
@click.argument("column", metavar="TABLE.COLUMN")
@click.option(
    "--on-copy",
    "rule",
    required=True,
    metavar="RULE",
    help="keep, default, null, or sql:EXPR (e.g. \"sql:'P' || lpad(s.id::text, 8, '0')\").",
)
@json_option
@names_database
@pass_app
def rule_set(app: App, column: str, rule: str, as_json: bool) -> None:
    """Say what a copy writes into TABLE.COLUMN (checked against the column first)."""
    with app.connect("config") as conn:
        stored = refs.set_rule(conn, column, rule)
    if as_json:
        emit_json(stored)
        return
    click.echo(
        f"on copy, {stored['table_name']}.{stored['column_name']}: {_rule_text(stored)}"
        + (f" (was {_rule_text(stored['replaced'])})" if stored["replaced"] else "")
    )


@rule_group.command("list")
@json_option
@pass_app
def rule_list(app: App, as_json: bool) -> None:
    """Every copy rule, and why one no longer applies."""
    with app.connect("config") as conn:
        rows = refs.list_rules(conn)
    if as_json:
        emit_json(rows)
        return
    click.echo(table(rows, ["table_name", "column_name", "on_copy", "set_by", "problem"]))


@rule_group.command("remove")
@click.argument("column", metavar="TABLE.COLUMN")
@json_option
@names_database
@pass_app
def rule_remove(app: App, column: str, as_json: bool) -> None:
    """Drop the rule of TABLE.COLUMN: copies treat it as an ordinary column again."""
    with app.connect("config") as conn:
        removed = refs.remove_rule(conn, column)
    if as_json:
        emit_json(removed)
        return
    click.echo(
        f"removed the rule of {removed['table_name']}.{removed['column_name']}"
        f" ({_rule_text(removed)})"
    )


def print_candidates(candidates: list[dict[str, Any]]) -> None:
    """discover's text output: references without a foreign key, and how to declare each."""
    if not candidates:
        return
    click.echo("\ncolumns that look like references without a foreign key (declare each):")
    click.echo(table(candidates, ["table_name", "column_name", "ref_table", "ref_column", "key"]))
    for candidate in candidates:
        click.echo(f"  {candidate['command']}")


def register(config: click.Group) -> None:
    config.add_command(ref_group)
    config.add_command(rule_group)
