"""Connections: every one is labelled and has a statement timeout."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from simtrail.errors import SimtrailError
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
