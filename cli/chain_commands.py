"""`keygen`, `seal` and `verify --db`: the database side of the hash chains."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from simtrail import signing
from simtrail.cli.app import App
from simtrail.cli.export_commands import verify_offline
from simtrail.cli.options import json_option, names_database, pass_app
from simtrail.cli.output import emit_json
from simtrail.errors import ConfigError
from simtrail.triggers import sealing


@click.command()
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Private key file (PEM, mode 0600); the public key goes to FILE.pub.",
)
@json_option
def keygen(out: Path, as_json: bool) -> None:
    """Make an Ed25519 key pair for signing checkpoints and manifests.

    Refuses when FILE or FILE.pub exists. Publish FILE.pub to auditors; keep FILE secret.
    """
    private, public, kid = signing.generate(out)
    if as_json:
        emit_json({"private_key": str(private), "public_key": str(public), "key_id": kid})
        return
    click.echo(f"private key {private} (keep it secret), public key {public}, key id {kid}")


def _load_signer(path: Path | None) -> signing.Signer | None:
    return signing.load_signer(path) if path is not None else None


@click.command()
@click.option(
    "--sign-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Ed25519 private key (from `simtrail keygen`): sign each checkpoint written.",
)
@click.option(
    "--batch",
    type=int,
    default=sealing.DEFAULT_BATCH,
    show_default=True,
    help="Changes sealed per transaction.",
)
@json_option
@names_database
@pass_app
def seal(app: App, sign_key: Path | None, batch: int, as_json: bool) -> None:
    """Seal every finished change into its tenant's hash chain, with a checkpoint per batch.

    Only transactions that ended before the oldest one still running are sealed,
    so a late commit never lands behind a sealed change. The daemon does this
    every cycle; this command is for running without it.
    """
    if batch < 1:
        raise ConfigError(f"--batch must be at least 1, got {batch}")
    signer = _load_signer(sign_key)
    with app.connect("seal") as conn:
        result = sealing.seal(conn, batch=batch, signer=signer)
    if as_json:
        emit_json(result)
        return
    signed = f", signed with key {result['key_id']}" if result["signed"] else ""
    click.echo(
        f"sealed {result['sealed']} changes in {result['batches']} batches;"
        f" {len(result['records'])} checkpoints written{signed}"
    )


@click.command()
@click.argument(
    "directory", required=False, type=click.Path(file_okay=False, path_type=Path)
)
@click.option("--db", "in_db", is_flag=True, help="Check the chains inside the database.")
@click.option(
    "--after",
    type=click.Path(file_okay=False, path_type=Path),
    help="With DIR: the export it continues; check there is no gap and no overlap.",
)
@click.option("--tenant", "-t", help="With --db: only this tenant's chain (and the records).")
@click.option(
    "--public-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Ed25519 public key: every signed record must verify with it.",
)
@json_option
@pass_app
def verify(
    app: App,
    directory: Path | None,
    in_db: bool,
    after: Path | None,
    tenant: str | None,
    public_key: Path | None,
    as_json: bool,
) -> None:
    """Check hash chains: an export DIR offline, or with --db the database's own.

    Exit 0 verified; 1 at the first problem, which is named: for DIR by file, line
    and seq, with --db by tenant, seq and change id. DIR needs no database.
    """
    if in_db == (directory is not None):
        raise ConfigError("give an export directory or --db, not both and not neither")
    if directory is not None:
        # Offline: no connection is opened, nothing of the database side runs.
        verify_offline(directory, after, public_key, as_json)
        return
    public = signing.load_public(public_key) if public_key is not None else None
    with app.connect("verify") as conn:
        report = sealing.verify_db(conn, tenant=tenant, public_key=public)
    _report(report, as_json)


def _report(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(report)
    elif report["ok"]:
        click.echo(
            f"verified: {report['chains']} chains, {report['seals']} seals,"
            f" {report['records']} records"
            + (f", {report['signatures']} signatures" if report.get("signatures") else "")
        )
    else:
        problem = report["problem"]
        where = ", ".join(
            f"{key} {problem[key]}"
            for key in ("tenant_id", "seq", "change_id", "record_id")
            if problem.get(key) is not None
        )
        click.echo(f"NOT verified: {problem['message']}" + (f" ({where})" if where else ""))
    if not report["ok"]:
        sys.exit(1)


def register(group: click.Group) -> None:
    group.add_command(keygen)
    group.add_command(seal)
    group.add_command(verify)
