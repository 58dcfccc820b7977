"""Which PostgreSQL to measure on, and the scratch databases of one run."""

from __future__ import annotations

import argparse
import dataclasses
import os
import secrets
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from bench.sql import query
from simtrail import embedded
from simtrail.settings import redact

LOCAL_DSN = "host=127.0.0.1 port=5432 user=root dbname=postgres"


@dataclass(frozen=True)
class Server:
    admin_dsn: str
    description: str


def _answers(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


@contextmanager
def server(dsn: str | None, datadir: Path) -> Iterator[Server]:
    """--dsn (`embedded` for the embedded server), else $DATABASE_URL, else the
    local server if it answers, else embedded."""
    if dsn and dsn != "embedded":
        yield Server(dsn, f"--dsn {redact(dsn)}")
        return
    if env := os.environ.get("DATABASE_URL"):
        yield Server(env, f"$DATABASE_URL ({redact(env)})")
        return
    if dsn is None and _answers(LOCAL_DSN):
        yield Server(LOCAL_DSN, f"local server ({LOCAL_DSN})")
        return
    with ExitStack() as stack:
        yield Server(embedded.start(datadir, stack), f"embedded PostgreSQL in {datadir}")


class Scratch:
    """Databases created for one run and dropped at its end, whatever happens."""

    def __init__(self, admin_dsn: str) -> None:
        self.admin_dsn = admin_dsn
        self.token = secrets.token_hex(3)
        self.created: list[str] = []

    def name(self, label: str) -> str:
        return f"simtrail_bench_{self.token}_{label}"

    def create(self, label: str) -> str:
        """Create the database for `label` and return its DSN."""
        name = self.name(label)
        db = sql.Identifier(name)
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(query("server.sql", "create_database").format(db=db))
            self.created.append(name)
            conn.execute(query("server.sql", "mark_database").format(db=db))
        return make_conninfo(self.admin_dsn, dbname=name)

    def drop_all(self) -> None:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            for name in reversed(self.created):
                conn.execute(query("server.sql", "drop_database").format(db=sql.Identifier(name)))
        self.created.clear()

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.drop_all()


def say(message: str) -> None:
    """Progress, on standard error (standard output may carry the section)."""
    print(message, file=sys.stderr, flush=True)


if TYPE_CHECKING:
    from _typeshed import DataclassInstance

P = TypeVar("P", bound="DataclassInstance")


def chosen_plan(args: argparse.Namespace, full: P, quick: P) -> P:
    """The plan --quick asks for, with the repeats --repeats gives."""
    plan = quick if args.quick else full
    return plan if args.repeats is None else dataclasses.replace(plan, repeats=args.repeats)
