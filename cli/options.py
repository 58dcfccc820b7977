"""Options and decorators shared by several commands."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

import click

from simtrail.cli.app import App

F = TypeVar("F", bound=Callable[..., Any])

pass_app = click.make_pass_decorator(App)


def names_database(f: F) -> F:
    """For `status` and every command that writes: say which database it acts on.

    The first line on stderr (`simtrail: database app on db.example.org:5432 as
    postgres`), printed as soon as the connection is open; with --json, a
    `connection` field of the result instead.
    """

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        click.get_current_context().ensure_object(App).announce = True
        return f(*args, **kwargs)

    return cast(F, wrapper)


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(f)


def dry_run_option(f: F) -> F:
    return click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")(
        f
    )


def tz_option(f: F) -> F:
    return click.option(
        "--tz",
        metavar="ZONE",
        help="Read times given without a UTC offset in ZONE (an IANA name such as"
        " Europe/Berlin); by default in the database session's TimeZone.",
    )(f)


def tenant_option(f: F) -> F:
    return click.option("--tenant", "-t", required=True, help="The tenant (class) key.")(f)
