"""Compliance: export (files an auditor keeps), verify DIR (offline), verify-disclosure."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from simtrail.cli.app import App
from simtrail.cli.options import json_option, names_database, pass_app
from simtrail.cli.output import emit_error, emit_json
from simtrail.errors import SimtrailError
from simtrail.times import parse_time

EXIT_PROBLEM = 1


@click.command()
@click.option("--out", "out", required=True, type=click.Path(path_type=Path),
              help="A new (or empty) directory for the files.")
@click.option("--tenant", "-t", "tenants", multiple=True, help="Only this tenant (repeatable).")
@click.option("--since", help="Changes at or after this time (ISO-8601; UTC without offset).")
@click.option("--until", help="Changes before this time.")
@click.option("--table", "tables", multiple=True, help="Only this table (repeatable).")
@click.option("--actor", help="Only changes whose actor has a field equal to this text.")
@click.option("--redact", "redact", multiple=True, metavar="TABLE.COLUMN",
              help="Replace this column's values by their commitments (repeatable).")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl",
              show_default=True)
@click.option("--after", type=click.Path(path_type=Path, file_okay=False),
              help="Continue exactly from this earlier export's heads.")
@click.option("--sign-key", type=click.Path(path_type=Path, dir_okay=False),
              help="Sign the export record with this Ed25519 private key (PEM).")
@json_option
@names_database
@pass_app
def export(app: App, out: Path, tenants: tuple[str, ...], since: str | None,
           until: str | None, tables: tuple[str, ...], actor: str | None,
           redact: tuple[str, ...], fmt: str, after: Path | None, sign_key: Path | None,
           as_json: bool) -> None:
    """Write the sealed history to OUT: changes, manifest, records, summary.html.

    A change a filter (--since, --until, --table, --actor) leaves out stays in
    its chain as a stub: its seq and hash, no data, so the chain still verifies.
    """
    from simtrail.export import writer

    filters = writer.Filters(
        tenants=list(tenants) or None,
        since=None if since is None else parse_time(since, "UTC").value,
        until=None if until is None else parse_time(until, "UTC").value,
        tables=[writer.qualify(t) for t in tables] or None,
        actor=actor, redact=[writer.redact_spec(r) for r in redact], format=fmt)
    if filters.since and filters.until and filters.since >= filters.until:
        raise SimtrailError("--since must be before --until")
    if after is not None and not after.is_dir():
        raise SimtrailError(f"--after {after}: no such directory")

    def connect(purpose: str, autocommit: bool) -> Any:
        return app.connect(purpose, autocommit=autocommit)

    with _progress(not as_json) as tick:
        report = writer.export(connect, out, filters, after=after, sign_key=sign_key,
                               progress=tick)
    if as_json:
        emit_json(report)
        return
    click.echo(f"exported {report['changes']} changes and {report['stubs']} stubs of"
               f" {report['chains']} chain(s) to {report['out']} (export record"
               f" {report['record_id']}{', signed' if report['signed'] else ''})")


class _progress:
    """A running count on stderr, only when stderr is a terminal."""

    def __init__(self, wanted: bool) -> None:
        self.on = wanted and sys.stderr.isatty()
        self.n = 0

    def __enter__(self) -> Any:
        return self.tick if self.on else None

    def tick(self, n: int) -> None:
        self.n += n
        if self.n % 10000 == 0:
            click.echo(f"\r{self.n} changes", err=True, nl=False)

    def __exit__(self, *exc: object) -> None:
        if self.on and self.n >= 10000:
            click.echo("", err=True)


def verify_offline(directory: Path, after: Path | None, public_key: Path | None,
                   as_json: bool) -> None:
    """`simtrail verify DIR`: exit 0 verified, 1 on the first problem (file, line, seq)."""
    from simtrail.export import verify as offline

    if not directory.is_dir():
        raise SimtrailError(f"{directory}: no such directory")
    if after is not None and not after.is_dir():
        raise SimtrailError(f"--after {after}: no such directory")
    key = None
    if public_key is not None:
        try:
            key = public_key.read_bytes()
        except OSError as exc:
            raise SimtrailError(f"cannot read {public_key}: {exc.strerror}") from None
    try:
        report = offline.verify(directory, after=after, public_key=key)
    except offline.Problem as problem:
        if as_json:
            emit_json({"verified": False, "problem": problem.as_dict()})
        else:
            emit_error(f"not verified: {problem.line_text()}", EXIT_PROBLEM, "not_verified")
        sys.exit(EXIT_PROBLEM)
    if as_json:
        emit_json(report.as_dict())
        return
    click.echo(f"verified: {report.lines} lines ({report.stubs} stubs) in {report.chains}"
               f" chain(s); signature {report.signature}"
               + (f"; continues {report.after}" if report.after else ""))


@click.command("verify-disclosure")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option("--change", "change_id", type=int, required=True, help="The change's id.")
@click.option("--side", type=click.Choice(["old", "new"]), required=True)
@click.option("--column", required=True)
@click.option("--value", required=True, help="The disclosed value as JSON, e.g. '\"Ada\"'.")
@click.option("--salt", required=True, help="The disclosed salt (32 hex digits).")
@click.pass_context
def verify_disclosure(ctx: click.Context, directory: Path, change_id: int, side: str,
                      column: str, value: str, salt: str) -> None:
    """Check a disclosed value of a redacted column against the export's commitment."""
    from simtrail.export import disclosure

    ok, message = disclosure.check(directory, change_id, side, column, value, salt)
    click.echo(message, err=not ok)
    if not ok:
        ctx.exit(EXIT_PROBLEM)


def register(group: click.Group) -> None:
    for command in (export, verify_disclosure):
        group.add_command(command)
