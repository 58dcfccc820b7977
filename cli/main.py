"""`simtrail`: the command line for operators, instructors and auditors."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click
import psycopg

from simtrail import __version__, logs
from simtrail.cli import rewind_commands, rpc_commands
from simtrail.cli.app import App
from simtrail.cli.daemon_command import daemon
from simtrail.cli.options import dry_run_option, json_option, pass_app
from simtrail.cli.output import emit_json, table
from simtrail.clinic import demo as clinic_demo
from simtrail.errors import ConfigError, SimtrailError
from simtrail.settings import first_line
from simtrail.triggers import config as config_rows
from simtrail.triggers import inspect, installer


class Group(click.Group):
    """Every failure leaves through here: one line on stderr, a non-zero exit."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SimtrailError as exc:
            fail(ctx, str(exc), exc.exit_code)
        except psycopg.Error as exc:
            fail(ctx, f"database: {first_line(str(exc))}", 2)


def fail(ctx: click.Context, message: str, exit_code: int) -> NoReturn:
    click.echo(f"simtrail: error: {message}", err=True)
    ctx.exit(exit_code)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--dsn",
    envvar="SIMTRAIL_DSN",
    help="PostgreSQL connection string. Default: $DATABASE_URL, else libpq's PG* variables.",
)
@click.option("--log-level", default="WARNING", show_default=True, help="Log level for stderr.")
@click.version_option(__version__, prog_name="simtrail")
@click.pass_context
def cli(ctx: click.Context, dsn: str | None, log_level: str) -> None:
    """Change capture and per-tenant rewind for multi-tenant PostgreSQL."""
    logs.configure(log_level)
    ctx.obj = App(dsn_option=dsn)


@cli.command()
@dry_run_option
@json_option
@pass_app
def install(app: App, dry_run: bool, as_json: bool) -> None:
    """Create or upgrade schema simtrail and attach capture triggers to the config's tables."""
    with app.connect("install") as conn:
        report = installer.install(conn, dry_run=dry_run)
    if as_json:
        emit_json(report.as_dict())
        return
    prefix = "would " if dry_run else ""
    if report.created_config_table:
        click.echo(f"{prefix}create public.simulation_table_config")
    if report.from_version != report.to_version:
        click.echo(
            f"{prefix}upgrade schema simtrail: v{report.from_version} → v{report.to_version}"
        )
    for action in report.actions:
        click.echo(f"{prefix}{action['action']} {action['table_name']}: {action['detail']}")
    if not report.actions and report.from_version == report.to_version:
        click.echo(f"simtrail v{report.to_version} is installed and up to date; nothing to do")
    elif dry_run:
        click.echo("dry run: nothing was changed")


@cli.command()
@click.option("--drop-log", is_flag=True, help="Also drop schema simtrail and all history in it.")
@dry_run_option
@json_option
@pass_app
def uninstall(app: App, drop_log: bool, dry_run: bool, as_json: bool) -> None:
    """Remove capture triggers (and with --drop-log, the log). App tables are never touched."""
    with app.connect("uninstall") as conn:
        result = installer.uninstall(conn, drop_log=drop_log, dry_run=dry_run)
    if as_json:
        emit_json(result)
        return
    prefix = "would " if dry_run else ""
    for name in result["detached"]:
        click.echo(f"{prefix}detach {name}")
    if drop_log:
        click.echo(f"{prefix}drop schema simtrail and its history")
    else:
        click.echo("schema simtrail and its history are kept (use --drop-log to remove them)")


@cli.command()
@json_option
@pass_app
def doctor(app: App, as_json: bool) -> None:
    """Check config, coverage and triggers. Exits 1 when anything needs fixing."""
    with app.connect("doctor") as conn:
        report = inspect.doctor(conn)
    if as_json:
        emit_json(report)
    elif report["findings"]:
        click.echo(table(report["findings"], ["severity", "kind", "table_name", "detail"]))
    else:
        click.echo("all enabled tables are captured by current triggers; nothing uncovered")
    if not report["ok"]:
        sys.exit(1)


@cli.command()
@json_option
@pass_app
def status(app: App, as_json: bool) -> None:
    """Installed version, covered tables and the size and span of the log."""
    with app.connect("status") as conn:
        report = inspect.status(conn)
    if as_json:
        emit_json(report)
        return
    if not report["installed"]:
        click.echo("simtrail is not installed in this database")
        return
    click.echo(f"simtrail {report['package_version']}, schema version {report['schema_version']}")
    click.echo(
        table(report["tables"], ["table_name", "reaches_tenant", "changes", "oldest", "newest"])
    )
    click.echo(
        f"{report['total_changes']} changes in the log, "
        f"from {report['oldest_change'] or '-'} to {report['newest_change'] or '-'}"
    )
    if report["changes_without_tenant"]:
        click.echo(f"{report['changes_without_tenant']} changes belong to no tenant")
    if daemon := report.get("daemon"):
        click.echo(
            f"daemon: {'leader ' + daemon['leader'] if daemon['leader'] else 'no leader running'}"
            f", last tick {daemon['last_tick'] or '-'}; {daemon['net_rows']} net changes in the"
            f" log, {daemon['archive_rows']} originals archived in"
            f" {daemon['archive_partitions']} partitions"
        )


@cli.group()
def config() -> None:
    """List and edit simulation_table_config; triggers follow each change."""


@config.command("list")
@json_option
@pass_app
def config_list(app: App, as_json: bool) -> None:
    """Show every config row."""
    with app.connect("config") as conn:
        rows = config_rows.list_rows(conn)
    if as_json:
        emit_json(rows)
        return
    click.echo(
        table(
            rows,
            [
                "table_name",
                "category",
                "enabled",
                "has_tenant_id",
                "has_patient_id",
                "parent_table",
                "parent_column",
            ],
        )
    )


def _print_actions(actions: list[dict[str, str]]) -> None:
    for action in actions:
        click.echo(f"{action['action']} {action['table_name']}: {action['detail']}")


@config.command("add")
@click.argument("table_name")
@click.option("--category", default="clinical", show_default=True)
@click.option("--tenant-column", "direct", is_flag=True, help="The table has its own tenant_id.")
@click.option("--via-patient", is_flag=True, help="Reach the tenant through patient_id → patients.")
@click.option("--parent", "parent_table", help="Reach the tenant through this parent table…")
@click.option("--parent-column", help="…via this foreign-key column of TABLE_NAME.")
@click.option("--disabled", is_flag=True, help="Add the row without capturing yet.")
@click.option("--notes")
@pass_app
def config_add(
    app: App,
    table_name: str,
    category: str,
    direct: bool,
    via_patient: bool,
    parent_table: str | None,
    parent_column: str | None,
    disabled: bool,
    notes: str | None,
) -> None:
    """Add TABLE_NAME and attach capture to it."""
    chosen = sum([direct, via_patient, parent_table is not None or parent_column is not None])
    if chosen != 1:
        raise ConfigError(
            "say how the table reaches its tenant: exactly one of --tenant-column, "
            "--via-patient, or --parent with --parent-column"
        )
    path = config_rows.TablePath(
        has_tenant_id=direct,
        has_patient_id=via_patient,
        parent_table=parent_table,
        parent_column=parent_column,
    )
    with app.connect("config") as conn:
        actions = config_rows.add(
            conn, table_name, category=category, path=path, enabled=not disabled, notes=notes
        )
    click.echo(f"added {table_name}")
    _print_actions(actions)


@config.command("enable")
@click.argument("table_name")
@pass_app
def config_enable(app: App, table_name: str) -> None:
    """Enable TABLE_NAME and attach capture to it."""
    with app.connect("config") as conn:
        _print_actions(config_rows.set_enabled(conn, table_name, True))


@config.command("disable")
@click.argument("table_name")
@pass_app
def config_disable(app: App, table_name: str) -> None:
    """Disable TABLE_NAME and detach capture from it (its history is kept)."""
    with app.connect("config") as conn:
        _print_actions(config_rows.set_enabled(conn, table_name, False))


@config.command("discover")
@click.option("--apply", is_flag=True, help="Add the proposals to the config and attach them.")
@json_option
@pass_app
def config_discover(app: App, apply: bool, as_json: bool) -> None:
    """Propose every tenant-scoped table and say how it reaches its tenant."""
    with app.connect("config") as conn:
        result = config_rows.discover(conn, apply=apply)
    if as_json:
        emit_json(result)
        return
    click.echo(table(result["tables"], ["table_name", "reaches_tenant", "configured"]))
    for name in result["added"]:
        click.echo(f"added {name}")
    for skipped in result["skipped"]:
        click.echo(f"skipped {skipped['table_name']}: {skipped['reason']}")
    _print_actions(result["actions"])
    if not apply and any(not t["configured"] for t in result["tables"]):
        click.echo("run with --apply to add the unconfigured tables")


@cli.command()
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path(".simtrail/demo-pg"),
    show_default=True,
    help="Where the embedded PostgreSQL keeps its files when no DSN is given.",
)
@json_option
@pass_app
def demo(app: App, data_dir: Path, as_json: bool) -> None:
    """Build a clinic, launch three classes, let students chart, show the captured history.

    Uses the server named by --dsn / DATABASE_URL / PG*, else an embedded PostgreSQL.
    """
    say: Callable[[str], None] = (lambda _: None) if as_json else click.echo
    result = clinic_demo.run(app.dsn, data_dir.resolve(), say)
    if as_json:
        emit_json(result)
        return
    click.echo("\nWhat simtrail captured during the session (one class only):")
    click.echo(
        table(result["session"], ["table_name", "operation", "changes", "without_tenant", "who"])
    )
    click.echo("\nCascaded deletes of rows without a tenant_id column, attributed to their class:")
    click.echo(table(result["cascade_example"], ["table_name", "tenant_id", "row_pk"]))
    click.echo("\nThe class before the session, after it, and after `simtrail reset`:")
    click.echo(
        table(
            [
                {
                    "table": p["table_name"],
                    "launch": _fingerprint(p["launch"]),
                    "after session": _fingerprint(p["after_session"]),
                    "after reset": _fingerprint(p["after_reset"]),
                    "same as launch": p["equal"],
                }
                for p in result["proof"]
            ],
            ["table", "launch", "after session", "after reset", "same as launch"],
        )
    )
    status = result["status"]
    click.echo(
        f"\nReset exact: {'yes' if result['reset_exact'] else 'NO'}; "
        f"other classes untouched: {'yes' if result['other_classes_untouched'] else 'NO'}."
    )
    click.echo(
        f"Log: {status['total_changes']} changes over {len(status['tables'])} tables, "
        f"{status['changes_without_tenant']} without a tenant."
    )
    if not (result["reset_exact"] and result["other_classes_untouched"]):
        sys.exit(1)


def _fingerprint(state: tuple[int, str] | list[Any]) -> str:
    rows, checksum = state
    return f"{rows} rows {checksum[:8]}"


rewind_commands.register(cli)
rpc_commands.register(cli)
cli.add_command(daemon)


def main() -> None:
    cli(prog_name="simtrail")


if __name__ == "__main__":
    main()
