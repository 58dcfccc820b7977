"""A fresh database per property-test example, cloned from a fixture's.

Examples that share one database see each other's history, so a failure
found on one depends on every example before it: hypothesis can neither
replay nor shrink it (FlakyFailure). The same goes for random keys: histories
pick rows by their position in key order, so new rows take keys from a
sequence that every copy starts at the same value. CREATE DATABASE … TEMPLATE copies the
files, which costs far less than seeding again (about 0.07 s); dropping a
database costs several times that, so drops run behind the next example.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

import psycopg
from psycopg import sql

from tests.conftest import Database

_copies = itertools.count()
_prepared: set[tuple[str, str]] = set()
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


def _deterministic_keys(db: Database) -> None:
    """Random uuid defaults become md5 of a sequence: the same history gives
    the same keys, hence the same picks, on every copy."""
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        conn.execute("CREATE SEQUENCE IF NOT EXISTS public.test_keys")
        columns = conn.execute(
            "SELECT c.oid::regclass::text, a.attname FROM pg_attrdef d"
            " JOIN pg_class c ON c.oid = d.adrelid JOIN pg_attribute a"
            "   ON a.attrelid = d.adrelid AND a.attnum = d.adnum"
            " WHERE c.relnamespace = 'public'::regnamespace"
            "   AND pg_get_expr(d.adbin, d.adrelid) = 'gen_random_uuid()'"
        ).fetchall()
        for relation, column in columns:
            conn.execute(
                sql.SQL(
                    "ALTER TABLE {} ALTER COLUMN {} SET DEFAULT"
                    " md5(nextval('public.test_keys')::text)::uuid"
                ).format(sql.SQL(relation), sql.Identifier(column))
            )


@contextmanager
def copy_of(db: Database) -> Iterator[Database]:
    """A fresh database cloned from db (which must have no open connections)."""
    if (db.server.name, db.name) not in _prepared:
        _deterministic_keys(db)
        _prepared.add((db.server.name, db.name))
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
