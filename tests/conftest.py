"""Fixtures: one template database per server, one fresh clone per test."""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from simtrail.clinic import seed
from simtrail.db import Conn, connect
from simtrail.triggers import installer
from tests import servers

SPECS = servers.wanted()
_counter = itertools.count()


@dataclass
class Server:
    name: str
    admin_dsn: str
    version: int
    templates: dict[str, str] = field(default_factory=dict)

    def dsn_for(self, dbname: str) -> str:
        return make_conninfo(self.admin_dsn, dbname=dbname)

    def admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.admin_dsn, autocommit=True)


@dataclass
class Database:
    """A throwaway database holding the clinic schema."""

    server: Server
    name: str
    dsn: str
    _conns: list[psycopg.Connection[Any]] = field(default_factory=list)

    def connect(self, purpose: str = "test", **kwargs: Any) -> Conn:
        conn = connect(self.dsn, purpose, **kwargs)
        self._conns.append(conn)
        return conn

    def sql(self, query: str, params: Any = None) -> list[dict[str, Any]]:
        """Run one statement in autocommit and return its rows, if any."""
        with psycopg.connect(self.dsn, autocommit=True, row_factory=dict_row) as conn:
            cur = conn.execute(query.encode(), params)
            return cur.fetchall() if cur.description else []

    def close(self) -> None:
        for conn in self._conns:
            conn.close()


@pytest.fixture(scope="session", params=[s.name for s in SPECS])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    spec = next(s for s in SPECS if s.name == request.param)
    with ExitStack() as stack:
        admin_dsn = servers.start(spec, stack)
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            version = conn.info.server_version
        srv = Server(spec.name, admin_dsn, version)
        yield srv
        with srv.admin() as conn:
            for name in srv.templates.values():
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def _template(server: Server, kind: str) -> str:
    """A template database: the clinic schema, optionally installed and seeded."""
    if kind in server.templates:
        return server.templates[kind]
    name = f"simtrail_tpl_{kind}_{os.getpid()}"
    with server.admin() as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with psycopg.connect(server.dsn_for(name), autocommit=True) as conn:
        seed.apply_schema(conn)
    if kind in ("installed", "seeded"):
        with connect(server.dsn_for(name), "test setup") as conn:
            installer.install(conn)
            seed.apply_copy_config(conn)
    if kind == "seeded":
        with psycopg.connect(server.dsn_for(name), autocommit=True) as conn:
            seed.seed_tenants(conn, tenants=3, patients_per_tenant=4, rng=random.Random(7))
    server.templates[kind] = name
    return name


def _clone(server: Server, kind: str) -> Iterator[Database]:
    template = _template(server, kind)
    name = f"simtrail_t{os.getpid()}_{next(_counter)}"
    with server.admin() as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    db = Database(server, name, server.dsn_for(name))
    try:
        yield db
    finally:
        db.close()
        with server.admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def clinic_db(server: Server) -> Iterator[Database]:
    """The clinic schema and its config rows; simtrail not installed."""
    yield from _clone(server, "clinic")


@pytest.fixture
def installed_db(server: Server) -> Iterator[Database]:
    """The clinic schema with simtrail installed, the fixture's declared
    references and copy rules, and no data yet."""
    yield from _clone(server, "installed")


@pytest.fixture
def seeded_db(server: Server) -> Iterator[Database]:
    """Installed, then three tenants seeded (so the seeding is in the log)."""
    yield from _clone(server, "seeded")


@pytest.fixture
def graph_db(server: Server) -> Iterator[Database]:
    """The graph schema's template (tests/graphs.py), to take fresh copies of
    with tests.fresh.copy_of; every copy is dropped before the test ends."""
    # Both import this module.
    from tests import fresh, graphs

    yield graphs.template(server)
    fresh.settle()


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


def run_cli(*args: str, dsn: str | None = None, env: dict[str, str] | None = None) -> CliResult:
    """The real `simtrail` command in a subprocess, as a user would run it."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "DATABASE_URL"))}
    full_env.update(env or {})
    command = [sys.executable, "-m", "simtrail.cli.main"]
    if dsn is not None:
        command += ["--dsn", dsn]
    done = subprocess.run(
        [*command, *args], capture_output=True, text=True, env=full_env, timeout=120, check=False
    )
    return CliResult(done.returncode, done.stdout, done.stderr)
