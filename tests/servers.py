"""The PostgreSQL servers the suite runs against.

`SIMTRAIL_TEST_DSNS` lists admin DSNs separated by commas (a key=value DSN
holds spaces, so spaces never separate); `embedded`
in that list means an embedded PostgreSQL 16 from pgserver, and `docker` a
throwaway container from testcontainers. Without it the suite uses the local
server at 127.0.0.1:5432 when one answers, plus the embedded one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import psycopg

from simtrail import embedded

LOCAL_DSN = "host=127.0.0.1 port=5432 user=root dbname=postgres"


@dataclass(frozen=True)
class ServerSpec:
    name: str
    dsn: str | None  # None: started on demand (embedded, docker)


def wanted() -> list[ServerSpec]:
    listed = os.environ.get("SIMTRAIL_TEST_DSNS", "").strip()
    if listed:
        specs = []
        items = [item.strip() for item in listed.split(",") if item.strip()]
        for i, item in enumerate(items):
            if item in ("embedded", "docker"):
                specs.append(ServerSpec(item, None))
            else:
                specs.append(ServerSpec(f"dsn{i}", item))
        return specs
    specs = []
    try:
        with psycopg.connect(LOCAL_DSN, connect_timeout=3) as conn:
            major = conn.info.server_version // 10000
        specs.append(ServerSpec(f"local-pg{major}", LOCAL_DSN))
    except psycopg.OperationalError:
        pass
    specs.append(ServerSpec("embedded", None))
    return specs


def start(spec: ServerSpec, stack: ExitStack) -> str:
    """An admin DSN for the server, starting it when needed."""
    if spec.dsn is not None:
        return spec.dsn
    if spec.name == "embedded":
        return _start_embedded(stack)
    return _start_container(stack)


def _start_embedded(stack: ExitStack) -> str:
    # Unix sockets live in the data directory, whose path must stay short.
    datadir = tempfile.mkdtemp(prefix="simtrail-pg-")
    stack.callback(shutil.rmtree, datadir, ignore_errors=True)
    return embedded.start(Path(datadir), stack)


def _start_container(stack: ExitStack) -> str:
    # Only where a Docker engine answers; kept apart so nothing else needs it.
    from testcontainers.postgres import PostgresContainer

    container = stack.enter_context(PostgresContainer("postgres:16-alpine", driver=None))
    url: str = container.get_connection_url()
    return url


def databases(admin_dsn: str) -> Iterator[str]:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        for (name,) in conn.execute("SELECT datname FROM pg_database"):
            yield name
