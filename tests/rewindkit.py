"""Helpers for rewind tests: per-tenant state, rewinds through SQL and the CLI."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import psycopg

from tests.conftest import Database

State = dict[str, tuple[int, str]]


def tenants(db: Database) -> list[str]:
    return [str(r["id"]) for r in db.sql("SELECT id FROM public.tenants ORDER BY name")]


def state(db: Database, tenant: str) -> State:
    """Row count and checksum of every captured table's rows of one tenant."""
    return {
        r["table_name"]: (int(r["row_count"]), r["checksum"])
        for r in db.sql("SELECT * FROM simtrail.tenant_state(%s)", (tenant,))
    }


def all_states(db: Database) -> dict[str, State]:
    return {t: state(db, t) for t in tenants(db)}


def mark(db: Database, tenant: str, name: str) -> None:
    db.sql("SELECT simtrail.mark(%s, %s)", (tenant, name))


def rewind(
    db: Database, tenant: str, target: str, *, dry_run: bool = False, force: bool = False
) -> dict[str, Any]:
    rows = db.sql(
        "SELECT simtrail.rewind(%s, %s, %s, %s) AS report", (tenant, target, dry_run, force)
    )
    report: dict[str, Any] = rows[0]["report"]
    return report


def rewind_error(db: Database, tenant: str, target: str, *, force: bool = False) -> str:
    """The SQLSTATE a rewind fails with (it must fail)."""
    try:
        rewind(db, tenant, target, force=force)
    except psycopg.Error as exc:
        assert exc.sqlstate is not None
        return exc.sqlstate
    raise AssertionError(f"rewind of {tenant} to {target} should have been refused")


def log_size(db: Database) -> int:
    return int(db.sql("SELECT count(*) AS n FROM simtrail.changes")[0]["n"])


def exact_targets(db: Database, tenant: str) -> tuple[int, dt.datetime]:
    """The tenant's last change id, and a time just after a tick: two targets
    for the tenant's state now that resolve exactly."""
    boundary = int(
        db.sql("SELECT max(id) AS id FROM simtrail.changes WHERE tenant_id = %s", (tenant,))[0][
            "id"
        ]
    )
    # Only a tick at or before a time places it.
    db.sql("SELECT simtrail.tick(interval '1 second')")
    time.sleep(0.05)
    cut: dt.datetime = db.sql("SELECT clock_timestamp() AS t")[0]["t"]
    time.sleep(0.05)
    return boundary, cut
