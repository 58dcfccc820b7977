"""Clones and subtree copies: launch a class from a template, duplicate a patient.

The work happens in SQL (simtrail.clone_tenant, simtrail.copy_subtree), so the
web app can call the same functions; this module adds the transaction, the
retries and errors a person can act on.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from simtrail.db import Conn
from simtrail.sqlfile import query
from simtrail.triggers.installer import PACKAGE
from simtrail.triggers.rewinding import report_call


def _q(name: str) -> psycopg.sql.SQL:
    return query(PACKAGE, "sql/copy_queries.sql", name)


def _run(conn: Conn, name: str, params: dict[str, Any]) -> dict[str, Any]:
    return report_call(conn, _q(name), params)


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
