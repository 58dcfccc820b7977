"""A fresh database per property-test example, cloned from a fixture's.

Examples that share one database see each other's history, so a failure
found on one depends on every example before it: hypothesis can neither
replay nor shrink it (FlakyFailure). CREATE DATABASE … TEMPLATE copies the
files, which costs far less than seeding again (about 0.07 s); dropping a
database costs several times that, so drops run behind the next example.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

from psycopg import sql

from tests.conftest import Database

_copies = itertools.count()
# One thread: drops queue up behind each other, never pile onto the server.
_dropper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="drop-copy")
_pending: list[Future[None]] = []


def _drop(db: Database) -> None:
    with db.server.admin() as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db.name))
        )


def settle() -> None:
    """Wait for the drops queued so far; raise the first that failed."""
    while _pending:
        _pending.pop(0).result()


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
        for done in [f for f in _pending if f.done()]:
            _pending.remove(done)
            done.result()  # a failed drop surfaces here, not silently
        _pending.append(_dropper.submit(_drop, copy))
