"""What changed in a class: since a target of its own history, or against its template.

Both are reads (simtrail.diff_since, simtrail.diff_against) made in one
REPEATABLE READ snapshot, so that the log and the live rows agree; the
transaction is rolled back, so nothing it staged is kept and no row is locked.
"""

from __future__ import annotations

from typing import Any

import psycopg

from simtrail.db import Conn
from simtrail.sqlfile import query
from simtrail.triggers.installer import PACKAGE
from simtrail.triggers.rewinding import report_call


def _q(name: str) -> psycopg.sql.SQL:
    return query(PACKAGE, "sql/purge_diff_queries.sql", name)


def since(conn: Conn, tenant: str, target: str) -> dict[str, Any]:
    """Rows inserted, deleted and changed (with their columns) since `target`."""
    return _read(conn, "diff_since", {"tenant": tenant, "target": target})


def against(conn: Conn, tenant: str, template: str) -> dict[str, Any]:
    """The clone `tenant` against its template, rows paired through the clone's key map."""
    return _read(conn, "diff_against", {"tenant": tenant, "template": template})


def _read(conn: Conn, name: str, params: dict[str, Any]) -> dict[str, Any]:
    return report_call(conn, _q(name), params, rollback=True, setup=_q("repeatable_read"))
