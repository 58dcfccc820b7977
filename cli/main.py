"""`simtrail`: the command line for operators, instructors and auditors."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click
import psycopg
from click.core import ParameterSource

from simtrail import __version__, logs
from simtrail.cli import (
    chain_commands,
    config_refs,
    copy_commands,
    export_commands,
    purge_diff_commands,
    rewind_commands,
    rpc_commands,
    snapshot_commands,
)
from simtrail.cli.app import App
from simtrail.cli.daemon_command import daemon
from simtrail.cli.options import dry_run_option, json_option, names_database, pass_app
from simtrail.cli.output import emit_error, emit_json, table
from simtrail.clinic import demo as clinic_demo
from simtrail.db import interruption
from simtrail.errors import EXIT_BAD_INPUT, ConfigError, SimtrailError
from simtrail.settings import first_line, validate_dsn
from simtrail.triggers import config as config_rows
from simtrail.triggers import inspect, installer

JSON_ARGS = "simtrail.json"


class Group(click.Group):
    """Every failure leaves through here: one line on stderr, a non-zero exit."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # Known before any option is parsed, so that usage errors are JSON too.
        ctx.meta[JSON_ARGS] = "--json" in (args[: args.index("--")] if "--" in args else args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SimtrailError as exc:
            fail(ctx, str(exc), exc.exit_code, exc.kind)
        except psycopg.Error as exc:
            if (gone := interruption(exc)) is not None:
                fail(ctx, str(gone), gone.exit_code, gone.kind)
            fail(ctx, f"database: {first_line(str(exc))}", EXIT_BAD_INPUT, "database")
        except click.UsageError as exc:
            if not ctx.meta.get(JSON_ARGS):
                raise
            fail(ctx, exc.format_message(), exc.exit_code, "usage")


def fail(ctx: click.Context, message: str, exit_code: int, kind: str) -> NoReturn:
    emit_error(message, exit_code, kind)
    ctx.exit(exit_code)


@click.group(
    cls=Group,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=(
        "Exit status: 0 done; 1 doctor or demo found a problem; 2 bad input (nothing"
        " written); 3 refused as unsafe (nothing written); 4 interrupted: the server"
        " cancelled or ended the session, or the connection broke (run it again)."
        " Errors are one line on stderr, a JSON object with --json."
    ),
)
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
    ctx.obj = App(dsn_option=dsn, as_json=bool(ctx.meta.get(JSON_ARGS)))


@cli.command()
@dry_run_option
@json_option
@names_database
@pass_app
def install(app: App, dry_run: bool, as_json: bool) -> None:
    """Create or upgrade schema simtrail and attach capture triggers to the config's tables."""
    with app.connect("install") as conn:
        report = installer.install(conn, dry_run=dry_run)
    if as_json:
        emit_json(report.as_dict())
        _exit_if_refused(report.refused)
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
    if not report.actions and not report.refused and report.from_version == report.to_version:
        click.echo(f"simtrail v{report.to_version} is installed and up to date; nothing to do")
    elif dry_run:
        click.echo("dry run: nothing was changed")
    _exit_if_refused(report.refused)


def _exit_if_refused(refused: list[dict[str, str]]) -> None:
    """Exit 1 (the rest was done, so not 2) after naming each refused config row."""
    for row in refused:
        click.echo(f"simtrail: error: {installer.refusal_line(row)}", err=True)
    if refused:
        sys.exit(1)


@cli.command()
@click.option("--drop-log", is_flag=True, help="Also drop schema simtrail and all history in it.")
@dry_run_option
@json_option
@names_database
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
    """Check config, coverage and triggers, and say what fixes each finding.

    Findings are sorted by severity, table and kind. Exits 1 when anything needs fixing.
    """
    with app.connect("doctor") as conn:
        report = inspect.doctor(conn)
    if as_json:
        emit_json(report)
    elif report["findings"]:
        click.echo(table(report["findings"], ["severity", "kind", "table_name", "detail", "fix"]))
    else:
        click.echo("all enabled tables are captured by current triggers; nothing uncovered")
    if not report["ok"]:
        sys.exit(1)


@cli.command()
@json_option
@names_database
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


def _print_actions(actions: list[dict[str, str]], refused: list[dict[str, str]]) -> None:
    for action in actions:
        click.echo(f"{action['action']} {action['table_name']}: {action['detail']}")
    # The change asked for was made; other rows' problems are only reported.
    for row in refused:
        click.echo(
            f"simtrail: warning: {installer.refusal_line(row)}; its triggers are left as they are",
            err=True,
        )


def _fill_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option(
        "--set",
        "extra",
        multiple=True,
        metavar="COLUMN=VALUE",
        help="A value for another column of your config table (NOT NULL ones need one).",
    )(f)
    f = click.option(
        "--delete-order", type=int, help="delete_order for the new row(s), where your table has it."
    )(f)
    return f


def _fill(category: str | None, delete_order: int | None, extra: tuple[str, ...]) -> Any:
    pairs: dict[str, str] = {}
    for item in extra:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--set {item!r}: expected COLUMN=VALUE")
        if name.strip() in pairs:
            raise ConfigError(f"--set {name.strip()} is given twice")
        pairs[name.strip()] = value
    return config_rows.Fill(category=category, delete_order=delete_order, extra=pairs)


@config.command("add")
@click.argument("table_name")
@click.option("--category", help="category for the row [default: the column's, else clinical].")
@click.option("--tenant-column", "direct", is_flag=True, help="The table has its own tenant_id.")
@click.option("--via-patient", is_flag=True, help="Reach the tenant through patient_id → patients.")
@click.option("--parent", "parent_table", help="Reach the tenant through this parent table…")
@click.option("--parent-column", help="…via this foreign-key column of TABLE_NAME.")
@click.option("--disabled", is_flag=True, help="Add the row without capturing yet.")
@click.option("--notes")
@_fill_options
@names_database
@pass_app
def config_add(
    app: App,
    table_name: str,
    category: str | None,
    direct: bool,
    via_patient: bool,
    parent_table: str | None,
    parent_column: str | None,
    disabled: bool,
    notes: str | None,
    delete_order: int | None,
    extra: tuple[str, ...],
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
    fill = _fill(category, delete_order, extra)
    with app.connect("config") as conn:
        result = config_rows.add(
            conn, table_name, path=path, fill=fill, enabled=not disabled, notes=notes
        )
    click.echo(f"added {table_name}")
    if result["values"]:
        click.echo(f"values: {config_rows.describe_values(result['values'])}")
    _print_actions(result["actions"], result["refused"])


@config.command("enable")
@click.argument("table_name")
@names_database
@pass_app
def config_enable(app: App, table_name: str) -> None:
    """Enable TABLE_NAME and attach capture to it."""
    with app.connect("config") as conn:
        synced = config_rows.set_enabled(conn, table_name, True)
    _print_actions(synced.actions, synced.refused)


@config.command("disable")
@click.argument("table_name")
@names_database
@pass_app
def config_disable(app: App, table_name: str) -> None:
    """Disable TABLE_NAME and detach capture from it (its history is kept)."""
    with app.connect("config") as conn:
        synced = config_rows.set_enabled(conn, table_name, False)
    _print_actions(synced.actions, synced.refused)


@config.command("retire")
@click.argument("table_name")
@names_database
@pass_app
def config_retire(app: App, table_name: str) -> None:
    """Retire a dropped TABLE_NAME: its config row goes, its history stays, rewinds skip it."""
    with app.connect("config") as conn:
        retired, synced = config_rows.retire(conn, table_name)
    click.echo(
        f"retired {retired['table']}: {retired['config_rows_removed']} config row(s) removed,"
        f" {retired['changes_kept']} logged change(s) kept"
    )
    _print_actions(synced.actions, synced.refused)


@config.command("discover")
@click.option("--apply", is_flag=True, help="Add the proposals to the config and attach them.")
@click.option(
    "--include",
    multiple=True,
    metavar="TABLE",
    help="Treat TABLE as tenant data although it looks like a user, tenant or catalogue table.",
)
@click.option(
    "--category", help="category for added rows [default: the column's, else discovered]."
)
@_fill_options
@json_option
@names_database
@pass_app
def config_discover(
    app: App,
    apply: bool,
    include: tuple[str, ...],
    category: str | None,
    delete_order: int | None,
    extra: tuple[str, ...],
    as_json: bool,
) -> None:
    """Propose every table of tenant data and say how it reaches its tenant."""
    fill = _fill(category, delete_order, extra)
    with app.connect("config") as conn:
        result = config_rows.discover(conn, apply=apply, include=include, fill=fill)
    if as_json:
        emit_json(result)
        return
    click.echo(table(result["tables"], ["table_name", "reaches_tenant", "configured"]))
    if result["not_tenant_data"]:
        click.echo("\nnot tenant data (--include TABLE to propose one anyway):")
        click.echo(table(result["not_tenant_data"], ["table_name", "reason"]))
    if result["ignored"]:
        click.echo("\nignored (simtrail config unignore TABLE to undo):")
        click.echo(table(result["ignored"], ["table_name", "reason"]))
    config_refs.print_candidates(result["references"])
    for name in result["added"]:
        click.echo(f"added {name}")
    if result["values"]:
        click.echo(f"values: {config_rows.describe_values(result['values'])}")
    for skipped in result["skipped"]:
        click.echo(f"skipped {skipped['table_name']}: {skipped['reason']}")
    _print_actions(result["actions"], result["refused"])
    if not apply and any(not t["configured"] for t in result["tables"]):
        click.echo("run with --apply to add the unconfigured tables")


@config.command("ignore")
@click.argument("table_name")
@click.option("--reason", help="Why it is not tenant data (kept with the entry).")
@pass_app
def config_ignore(app: App, table_name: str, reason: str | None) -> None:
    """Say TABLE_NAME is not tenant data: discovery and doctor leave it alone."""
    with app.connect("config") as conn:
        name = config_rows.ignore(conn, table_name, reason)
    click.echo(f"ignored {name}")


@config.command("unignore")
@click.argument("table_name")
@pass_app
def config_unignore(app: App, table_name: str) -> None:
    """Undo `config ignore`: discovery and doctor look at TABLE_NAME again."""
    with app.connect("config") as conn:
        name = config_rows.unignore(conn, table_name)
    click.echo(f"no longer ignored: {name}")


@config.command("ignored")
@json_option
@pass_app
def config_ignored(app: App, as_json: bool) -> None:
    """List the tables marked as not tenant data."""
    with app.connect("config") as conn:
        rows = config_rows.ignored(conn)
    if as_json:
        emit_json(rows)
        return
    click.echo(table(rows, ["table_name", "reason", "ignored_at", "ignored_by", "exists"]))


@cli.command()
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path(".simtrail/demo-pg"),
    show_default=True,
    help="Where the embedded PostgreSQL keeps its files when no DSN is given.",
)
@click.option("--dsn", "demo_dsn", help="Build the demo database on this server instead.")
@json_option
@names_database
@pass_app
def demo(app: App, data_dir: Path, demo_dsn: str | None, as_json: bool) -> None:
    """Build a clinic, launch a class from a template, copy a patient, chart, reset.

    Runs on an embedded PostgreSQL unless --dsn is given on the command line
    (before or after `demo`): DATABASE_URL, PG* and SIMTRAIL_DSN are ignored, so
    the demo never creates a database on a server it was not asked to use.
    """
    say: Callable[[str], None] = (lambda _: None) if as_json else click.echo
    result = clinic_demo.run(
        _asked_for(demo_dsn), data_dir.resolve(), say, on_connect=app.arrived,
        export_dir=data_dir.resolve().parent / "demo-export",
    )
    if as_json:
        emit_json(result)
        return
    launch = result["launch"]
    click.echo(
        "\nThe class launched from the template with `simtrail clone` (new ids, same content):"
    )
    click.echo(
        table(launch["tables"], ["table_name", "template_rows", "launched_rows", "ids_shared"])
    )
    differ = launch["diff_against_template"]
    click.echo(
        f"diff --against the template: {differ['differ']} rows differ, "
        f"{differ['only_in_clone']} only in the class, {differ['only_in_template']} only in the"
        " template (wristbands and reset columns are ruled, so not compared)"
    )
    dup = result["duplicate"]
    click.echo(
        f"\n`simtrail copy` duplicated patient {dup['mrn']} into another class: "
        + ", ".join(f"{n} {t.removeprefix('public.')}" for t, n in sorted(dup["tables"].items()))
    )
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
        f"\nLaunch exact: {'yes' if result['launch_exact'] else 'NO'}; "
        f"reset exact: {'yes' if result['reset_exact'] else 'NO'}; "
        f"other classes untouched: {'yes' if result['other_classes_untouched'] else 'NO'}."
    )
    click.echo(
        f"Log: {status['total_changes']} changes over {len(status['tables'])} tables, "
        f"{status['changes_without_tenant']} without a tenant."
    )
    if not (result["launch_exact"] and result["reset_exact"] and result["other_classes_untouched"]):
        sys.exit(1)


def _asked_for(demo_dsn: str | None) -> str | None:
    """The DSN typed on the command line for the demo, else None (embedded)."""
    if demo_dsn:
        validate_dsn(demo_dsn)
        return demo_dsn
    top = click.get_current_context().find_root()
    if top.get_parameter_source("dsn") is ParameterSource.COMMANDLINE:
        explicit: str | None = top.params.get("dsn")
        return explicit
    return None


def _fingerprint(state: tuple[int, str] | list[Any]) -> str:
    rows, checksum = state
    return f"{rows} rows {checksum[:8]}"


config_refs.register(config)
rewind_commands.register(cli)
copy_commands.register(cli)
export_commands.register(cli)
purge_diff_commands.register(cli)
rpc_commands.register(cli)
snapshot_commands.register(cli)
chain_commands.register(cli)
cli.add_command(daemon)


def main() -> None:
    cli(prog_name="simtrail")


if __name__ == "__main__":
    main()
