"""`simtrail rpc` and `simtrail instructor`: the optional PostgREST surface and who it admits."""

from __future__ import annotations

import click

from simtrail.cli.app import App
from simtrail.cli.options import json_option, pass_app, tenant_option
from simtrail.cli.output import emit_json, table
from simtrail.triggers import rpc


@click.group("rpc")
def rpc_group() -> None:
    """Public wrappers (simtrail_rewind, simtrail_mark, …) for PostgREST, for instructors only."""


@rpc_group.command("install")
@json_option
@pass_app
def rpc_install(app: App, as_json: bool) -> None:
    """Create or refresh the wrappers in schema public; EXECUTE for `authenticated` only."""
    with app.connect("rpc", autocommit=False) as conn:
        functions = rpc.install_rpc(conn)
    if as_json:
        emit_json(functions)
        return
    for fn in functions:
        click.echo(f"installed {fn['name']} (execute: {', '.join(fn['granted_to']) or 'nobody'})")
    click.echo("callers are admitted per tenant: see `simtrail instructor add`")


@rpc_group.command("remove")
@pass_app
def rpc_remove(app: App) -> None:
    """Drop the wrappers; simtrail itself and its history stay."""
    with app.connect("rpc", autocommit=False) as conn:
        rpc.remove_rpc(conn)
    click.echo("removed the public simtrail_* wrappers")


@rpc_group.command("status")
@json_option
@pass_app
def rpc_status(app: App, as_json: bool) -> None:
    """The installed wrappers and the roles that may execute them."""
    with app.connect("rpc") as conn:
        functions = rpc.rpc_status(conn)
    if as_json:
        emit_json(functions)
    elif functions:
        click.echo(table(functions, ["name", "granted_to"]))
    else:
        click.echo("no RPC wrappers installed (run `simtrail rpc install`)")


@click.group("instructor")
def instructor_group() -> None:
    """Who may call the RPC wrappers for which tenant (the JWT's sub)."""


_sub_option = click.option("--sub", required=True, help="The user's id: the `sub` of their JWT.")


@instructor_group.command("add")
@_sub_option
@tenant_option
@pass_app
def instructor_add(app: App, sub: str, tenant: str) -> None:
    """Let SUB rewind, mark and read the history of TENANT over RPC."""
    with app.connect("instructor", autocommit=False) as conn:
        added = rpc.add_instructor(conn, sub, tenant)
    click.echo(
        f"{'added' if added else 'already present:'} {sub} as an instructor of tenant {tenant}"
    )


@instructor_group.command("remove")
@_sub_option
@tenant_option
@pass_app
def instructor_remove(app: App, sub: str, tenant: str) -> None:
    """Take TENANT away from SUB."""
    with app.connect("instructor", autocommit=False) as conn:
        rpc.remove_instructor(conn, sub, tenant)
    click.echo(f"removed {sub} as an instructor of tenant {tenant}")


@instructor_group.command("list")
@click.option("--tenant", "-t", help="Only this tenant.")
@json_option
@pass_app
def instructor_list(app: App, tenant: str | None, as_json: bool) -> None:
    """Every instructor, per tenant."""
    with app.connect("instructor") as conn:
        rows = rpc.list_instructors(conn, tenant)
    if as_json:
        emit_json(rows)
    else:
        click.echo(table(rows, ["tenant", "sub", "added_at", "added_by"]))


@instructor_group.command("grant-role")
@click.argument("role")
@click.option("--revoke", is_flag=True, help="Take the grant back.")
@pass_app
def instructor_grant_role(app: App, role: str, revoke: bool) -> None:
    """Let database role ROLE call rewind, mark and history directly, for every tenant."""
    with app.connect("instructor", autocommit=False) as conn:
        rpc.grant_role(conn, role, revoke=revoke)
    click.echo(
        f"{'revoked from' if revoke else 'granted to'} {role}: usage on schema simtrail,"
        " execute on rewind, mark, list_marks, history"
    )


def register(cli: click.Group) -> None:
    cli.add_command(rpc_group)
    cli.add_command(instructor_group)
