"""The daemon's named queries, from sql/queries.sql."""

from __future__ import annotations

from psycopg import sql

from simtrail.sqlfile import query

PACKAGE = "simtrail.daemon"


def q(name: str) -> sql.SQL:
    return query(PACKAGE, "sql/queries.sql", name)
