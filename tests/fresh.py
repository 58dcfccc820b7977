"""A fresh database per property-test example, cloned from a fixture's.

Examples that share one database see each other's history, so a failure
found on one depends on every example before it: hypothesis can neither
replay nor shrink it (FlakyFailure). CREATE DATABASE … TEMPLATE copies the
files, which costs far less than seeding again.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager

from psycopg import sql

from tests.conftest import Database

_copies = itertools.count()


@contextmanager
def copy_of(db: Database) -> Iterator[Database]:
    """A fresh database cloned from db (which must have no open connections)."""
    name = f"{db.name}_c{next(_copies)}"
    with db.server.admin() as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(db.name)
            )
        )
    copy = Database(db.server, name, db.server.dsn_for(name))
    try:
        yield copy
    finally:
        copy.close()
        with db.server.admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
