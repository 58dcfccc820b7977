"""Connections: every one is labelled and has a statement timeout."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from simtrail.errors import SessionInterrupted, SimtrailError
from simtrail.settings import first_line, redact

DEFAULT_STATEMENT_TIMEOUT_MS = 300_000

Conn = psycopg.Connection[dict[str, Any]]


def connect(
    dsn: str,
    purpose: str,
    *,
    autocommit: bool = True,
    statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS,
    **libpq: Any,
) -> Conn:
    """Open a connection whose `application_name` says who holds it.

    `pg_stat_activity` then tells an operator which simtrail part is which.
    """
    try:
        return psycopg.connect(
            dsn,
            application_name=f"simtrail {purpose}",
            options=f"-c statement_timeout={int(statement_timeout_ms)}",
            connect_timeout=10,
            autocommit=autocommit,
            row_factory=dict_row,
            **libpq,
        )
    except psycopg.OperationalError as exc:
        raise SimtrailError(
            f"cannot connect to {redact(dsn) or 'the PG* default server'}: {first_line(str(exc))}"
        ) from None
    except psycopg.ProgrammingError as exc:
        raise SimtrailError(f"malformed DSN: {first_line(str(exc))}") from None


# A cancelled statement (pg_cancel_backend, statement_timeout) and a session the
# server ended (pg_terminate_backend, a shutdown): the transaction was rolled back
# by the server unless it had already committed.
_INTERRUPTED = (
    psycopg.errors.QueryCanceled,
    psycopg.errors.AdminShutdown,
    psycopg.errors.CrashShutdown,
    psycopg.errors.CannotConnectNow,
)


def interruption(exc: psycopg.Error) -> SessionInterrupted | None:
    """The error as an interruption, or None when it is something else."""
    text = first_line(exc.diag.message_primary or str(exc))
    if isinstance(exc, psycopg.errors.QueryCanceled):
        what = "the server cancelled the statement"
    elif isinstance(exc, _INTERRUPTED):
        what = "the server ended the session"
    elif isinstance(exc, psycopg.OperationalError) and (
        exc.sqlstate is None or exc.sqlstate.startswith("08")
    ):
        what = "the connection to the server was lost"
    else:
        return None
    return SessionInterrupted(
        f"interrupted: {what} ({text}); a transaction that had not committed is rolled"
        " back, so the command can be run again"
    )


def describe(conn: Conn) -> dict[str, Any]:
    """Which server, database and role a connection acts on; never the password."""
    info = conn.info
    return {
        "database": info.dbname,
        "host": info.host,
        "port": info.port,
        "user": info.user,
        "server_version": info.server_version,
    }


def banner(target: dict[str, Any]) -> str:
    """One line naming the database, in the spirit of psql's `\\conninfo`."""
    host = str(target["host"])
    where = f"via socket {host} port {target['port']}" if host.startswith("/") else (
        f"on {host}:{target['port']}"
    )
    return f"simtrail: database {target['database']} {where} as {target['user']}"
