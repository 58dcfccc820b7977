"""Marks, rewinds and history for one tenant: the half instructors use.

The work happens in SQL (simtrail.mark, simtrail.rewind), so the web app can
call the same functions over RPC; this module adds transactions, retries and
errors a person can act on.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import psycopg

from simtrail.db import Conn, interruption
from simtrail.errors import EXIT_REFUSED, SimtrailError
from simtrail.settings import first_line
from simtrail.triggers.installer import q, require_installed

RETRYABLE = (psycopg.errors.DeadlockDetected, psycopg.errors.LockNotAvailable)


class BadInputError(SimtrailError):
    """An unknown tenant, mark or table, or a malformed target."""


class RefusedError(SimtrailError):
    """The rewind would be wrong or unsafe, so nothing was changed."""

    exit_code = EXIT_REFUSED
    kind = "refused"


def translate(exc: psycopg.Error) -> SimtrailError:
    if (gone := interruption(exc)) is not None:
        return gone
    message = first_line(exc.diag.message_primary or str(exc))
    if isinstance(exc, psycopg.errors.InvalidParameterValue):
        return BadInputError(message)
    if isinstance(
        exc, psycopg.errors.ObjectNotInPrerequisiteState | psycopg.errors.ForeignKeyViolation
    ):
        return RefusedError(message)
    if isinstance(exc, psycopg.errors.LockNotAvailable | psycopg.errors.InsufficientPrivilege):
        return RefusedError(message)
    return SimtrailError(f"database: {message}")


def _call(conn: Conn, name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    require_installed(conn)
    try:
        with conn.transaction():
            return [dict(r) for r in conn.execute(q(name), params)]
    except psycopg.Error as exc:
        raise translate(exc) from None


def create_mark(conn: Conn, tenant: str, name: str, *, replace: bool = False) -> dict[str, Any]:
    """Mark the tenant's state now; a name in use is refused unless replace is set."""
    params = {"tenant": tenant, "name": name, "replace": replace}
    mark: dict[str, Any] = _call(conn, "mark_create", params)[0]["mark"]
    return mark


def list_marks(conn: Conn, tenant: str) -> list[dict[str, Any]]:
    return _call(conn, "mark_list", {"tenant": tenant})


def delete_mark(conn: Conn, tenant: str, name: str) -> int:
    deleted: int = _call(conn, "mark_delete", {"tenant": tenant, "name": name})[0]["deleted"]
    return deleted


def rewind(
    conn: Conn,
    tenant: str,
    target: str,
    *,
    dry_run: bool = False,
    force: bool = False,
    nearest: bool = False,
    attempts: int = 5,
) -> dict[str, Any]:
    """Rewind in one transaction; retried whole on a deadlock, never partial."""
    params = {
        "tenant": tenant,
        "target": target,
        "dry_run": dry_run,
        "force": force,
        "nearest": nearest,
    }
    return report_call(conn, q("rewind"), params, rollback=dry_run, attempts=attempts)


def report_call(
    conn: Conn,
    query: psycopg.sql.SQL,
    params: dict[str, Any],
    *,
    rollback: bool = False,
    setup: psycopg.sql.SQL | None = None,
    attempts: int = 5,
) -> dict[str, Any]:
    """One SQL call returning a jsonb `report`, in a transaction of its own.

    Retried whole on a deadlock, never partial; with `rollback` (dry runs,
    reads) nothing it wrote is kept. `setup` runs first in the transaction
    (SET TRANSACTION …). The report gains `wall_ms`.
    """
    require_installed(conn)
    for attempt in range(1, attempts + 1):
        started = time.monotonic()
        try:
            with conn.transaction(force_rollback=rollback):
                if setup is not None:
                    conn.execute(setup)
                row = conn.execute(query, params).fetchone()
        except RETRYABLE as exc:
            if attempt == attempts:
                raise translate(exc) from None
            time.sleep(min(0.1 * 2**attempt, 2.0))
            continue
        except psycopg.Error as exc:
            raise translate(exc) from None
        assert row is not None
        report: dict[str, Any] = row["report"]
        report["wall_ms"] = round((time.monotonic() - started) * 1000, 1)
        return report
    raise AssertionError("unreachable")


def session_zone(conn: Conn) -> str:
    """The session's TimeZone: where a time typed without an offset is read."""
    row = conn.execute(q("session_zone")).fetchone()
    assert row is not None
    return str(row["zone"])


def tenant_state(conn: Conn, tenant: str) -> dict[str, tuple[int, str]]:
    rows = _call(conn, "tenant_state", {"tenant": tenant})
    return {r["table_name"]: (int(r["row_count"]), r["checksum"]) for r in rows}


def history(
    conn: Conn,
    tenant: str,
    *,
    table: str | None = None,
    since: dt.datetime | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """The tenant's timeline, oldest first: the newest `limit` entries.

    An entry is a change (`kind` "change", with a column-by-column diff) or a
    mark (`kind` "mark"), placed at the time it was taken.
    """
    canonical = _call(conn, "known_tenant", {"tenant": tenant})[0]["tenant"]
    if table is not None and "." not in table:
        table = f"public.{table}"
    rows = _call(
        conn,
        "history",
        {"tenant": canonical, "table": table, "since": since, "limit": limit},
    )
    timeline: list[dict[str, Any]] = []
    for row in reversed(rows):
        if row["kind"] == "mark":
            timeline.append(
                {
                    "kind": "mark",
                    "id": row["id"],
                    "name": row["name"],
                    "created_at": row["at"],
                    "created_by": row["actor"],
                    "who": who(row["actor"]),
                }
            )
            continue
        change = {k: v for k, v in row.items() if k not in ("at", "name")}
        change["changed_at"] = row["at"]
        change["diff"] = column_diff(row["old_data"], row["new_data"])
        change["who"] = who(row["actor"])
        timeline.append(change)
    return timeline


def column_diff(old: dict[str, Any] | None, new: dict[str, Any] | None) -> dict[str, list[Any]]:
    """{column: [before, after]} for the columns an update changed."""
    if old is None or new is None:
        return {}
    return {
        k: [old.get(k), new.get(k)] for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)
    }


def who(actor: dict[str, Any] | None) -> str:
    if not actor:
        return "?"
    for key in ("email", "actor", "sub"):
        if actor.get(key):
            return str(actor[key])
    return str(actor.get("session_user", "?"))
