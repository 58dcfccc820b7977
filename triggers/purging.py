"""Purge a class: delete every captured row of one tenant (simtrail.purge_tenant).

The purge is an ordinary captured write, so a rewind to a mark taken before
it brings the class back exactly.
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


def purge(conn: Conn, tenant: str, *, dry_run: bool = False) -> dict[str, Any]:
    """Delete the tenant's rows in one transaction, or with dry_run only count them.

    Refused whole (nothing written) when a row of another tenant references one
    of them, or an untracked table's foreign key would block the delete.
    """
    return report_call(conn, _q("purge"), {"tenant": tenant, "dry_run": dry_run}, rollback=dry_run)
