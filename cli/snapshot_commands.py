"""`simtrail snapshot`: export a class as a JSON document, import one into a class."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import click

from simtrail.cli.app import App
from simtrail.cli.copy_commands import show_copy
from simtrail.cli.options import (
    dry_run_option,
    json_option,
    names_database,
    pass_app,
    tenant_option,
    tz_option,
)
from simtrail.cli.output import emit_json
from simtrail.cli.rewind_commands import typed_target
from simtrail.errors import SimtrailError
from simtrail.triggers import snapshots


@click.group()
def snapshot() -> None:
    """Snapshot documents: {"<table>": [rows…], "snapshot_metadata": {…}}."""


def _refuse_existing(out: Path) -> None:
    raise SimtrailError(f"{out} exists; pass --force to replace it")


def write_new_file(out: Path, text: str, *, replace: bool) -> None:
    """Write `text` to `out` whole or not at all: a temporary file in the same
    directory, then a rename (or, without `replace`, a link that fails when
    `out` exists, so a file that appeared meanwhile is not overwritten)."""
    temp = out.with_name(f".{out.name}.{secrets.token_hex(6)}.tmp")
    try:
        _write_then_move(temp, out, text, replace)
    except OSError as exc:
        raise SimtrailError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        temp.unlink(missing_ok=True)


def _write_then_move(temp: Path, out: Path, text: str, replace: bool) -> None:
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    if replace:
        os.replace(temp, out)
        return
    try:
        os.link(temp, out)
    except FileExistsError:
        _refuse_existing(out)
    except OSError:
        # No hard links on this file system: check, then rename.
        if out.exists():
            _refuse_existing(out)
        os.replace(temp, out)


@snapshot.command("export")
@tenant_option
@click.option(
    "--at",
    "target",
    help="The rows as they were at mark:NAME, change:ID or an ISO-8601 time (default: now).",
)
@tz_option
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the document to FILE (whole or not at all) instead of stdout.",
)
@click.option("--force", is_flag=True, help="With --out: replace FILE if it exists.")
@json_option
@pass_app
def snapshot_export(
    app: App,
    tenant: str,
    target: str | None,
    tz: str | None,
    out: Path | None,
    force: bool,
    as_json: bool,
) -> None:
    """Write the tenant's rows of every captured table as one JSON document.

    Public tables are keyed by their bare name, others as schema.table; rows are
    whole (generated columns included) and ordered by primary key. Read in one
    snapshot: the class's writers are not held up, and nothing is written.
    """
    if out is not None and out.exists() and not force:
        _refuse_existing(out)
    with app.connect("snapshot") as conn:
        at = typed_target(conn, target, tz) if target is not None else None
        exported = snapshots.export(conn, tenant, at)
    if out is None:
        click.echo(exported.text)
        return
    write_new_file(out, exported.text + "\n", replace=force)
    metadata = exported.metadata
    if as_json:
        emit_json(
            {
                "file": str(out),
                "tenant": metadata["tenant"],
                "at": metadata["at"],
                "rows": exported.row_count,
                "tables": {k: v["rows"] for k, v in metadata["tables"].items()},
            }
        )
        return
    when = metadata["at"]
    click.echo(
        f"exported {exported.row_count} rows of {len(metadata['tables'])} tables of tenant"
        f" {metadata['tenant']} ({when['resolved_by']}, {when['at']}) to {out}"
    )


@snapshot.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--to-tenant", "to_tenant", required=True, help="The tenant (class) to load into.")
@click.option(
    "--skip-unknown",
    is_flag=True,
    help="Leave out (and list) tables the document holds that are not captured here.",
)
@click.option(
    "--mark",
    "mark_name",
    default="launch",
    show_default=True,
    help="The mark taken on the tenant at the end, for `simtrail reset`.",
)
@dry_run_option
@json_option
@names_database
@pass_app
def snapshot_import(
    app: App,
    file: str,
    to_tenant: str,
    skip_unknown: bool,
    mark_name: str,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Load a snapshot document (FILE, or - for stdin) into a tenant, as a clone does.

    Every row gets a new key, references are remapped and the copy rules apply.
    A document with an unknown table or column, a row without its primary key
    or a value its column refuses is refused whole, and nothing is written.
    """
    data = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    source = "stdin" if file == "-" else file
    text = snapshots.read_document(source, data)
    with app.connect("snapshot") as conn:
        report = snapshots.import_document(
            conn,
            text,
            to_tenant,
            dry_run=dry_run,
            skip_unknown=skip_unknown,
            mark=mark_name,
            source=source,
        )
    if not as_json:
        # With --json the report holds both.
        for name in report["skipped_tables"]:
            click.echo(f"simtrail: warning: skipped {name}: not captured here", err=True)
        for what, items in sorted((report["differences"] or {}).items()):
            if items:
                click.echo(
                    f"simtrail: warning: {len(items)} {what.replace('_', ' ')}"
                    " (the references and rules here were applied; see --json)",
                    err=True,
                )
    show_copy(report, as_json, source=source)


def register(group: click.Group) -> None:
    group.add_command(snapshot)
