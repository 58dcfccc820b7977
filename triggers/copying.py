"""Clones and subtree copies: launch a class from a template, duplicate a patient.

The work happens in SQL (simtrail.clone_tenant, simtrail.copy_subtree), so the
web app can call the same functions; this module adds the transaction, the
retries and errors a person can act on.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from simtrail.db import Conn
from simtrail.settings import first_line
from simtrail.sqlfile import query
from simtrail.triggers.installer import PACKAGE, require_installed
from simtrail.triggers.rewinding import RETRYABLE, BadInputError, RefusedError, translate


def _q(name: str) -> psycopg.sql.SQL:
    return query(PACKAGE, "sql/copy_queries.sql", name)


def _translate(exc: psycopg.Error) -> Exception:
    message = first_line(exc.diag.message_primary or str(exc))
    if isinstance(exc, psycopg.errors.UniqueViolation):
        return RefusedError(message)
    if isinstance(exc, psycopg.errors.NoDataFound | psycopg.errors.UndefinedTable):
        return BadInputError(message)
    return translate(exc)


def _run(conn: Conn, name: str, params: dict[str, Any], attempts: int = 3) -> dict[str, Any]:
    """One transaction; retried whole on a deadlock, never partial."""
    require_installed(conn)
    for attempt in range(1, attempts + 1):
        started = time.monotonic()
        try:
            with conn.transaction():
                row = conn.execute(_q(name), params).fetchone()
        except RETRYABLE as exc:
            if attempt == attempts:
                raise _translate(exc) from None
            time.sleep(min(0.1 * 2**attempt, 2.0))
            continue
        except psycopg.Error as exc:
            raise _translate(exc) from None
        assert row is not None
        report: dict[str, Any] = row["report"]
        report["wall_ms"] = round((time.monotonic() - started) * 1000, 1)
        return report
    raise AssertionError("unreachable")


def clone(
    conn: Conn,
    source: str,
    target: str,
    *,
    at: str | None = None,
    dry_run: bool = False,
    mark: str | None = None,
) -> dict[str, Any]:
    """Copy every captured row of `source` (now, or at `at`) into the empty `target`."""
    return _run(
        conn, "clone", {"from": source, "to": target, "at": at, "dry_run": dry_run, "mark": mark}
    )


def copy_subtree(
    conn: Conn,
    table: str,
    key: dict[str, Any],
    target: str,
    *,
    only: tuple[str, ...] = (),
    skip: tuple[str, ...] = (),
    dry_run: bool = False,
) -> dict[str, Any]:
    """Copy one row and every configured row that references it into `target`."""
    options: dict[str, Any] = {"dry_run": dry_run}
    if only:
        options["only"] = list(only)
    if skip:
        options["skip"] = list(skip)
    return _run(
        conn,
        "copy_subtree",
        {"table": table, "key": Jsonb(key), "to": target, "options": Jsonb(options)},
    )
