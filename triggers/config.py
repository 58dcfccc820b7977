"""simulation_table_config: list, add, enable, disable and discover rows.

Every change is checked and, when simtrail is installed, the triggers are
synced in the same transaction: a bad row is refused and nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from simtrail.db import Conn
from simtrail.errors import ConfigError
from simtrail.settings import first_line
from simtrail.triggers.installer import q, require_installed


@dataclass(frozen=True)
class TablePath:
    """How a new config row reaches its tenant."""

    has_tenant_id: bool = False
    has_patient_id: bool = False
    parent_table: str | None = None
    parent_column: str | None = None


def qualified(name: str) -> str:
    return name if "." in name else f"public.{name}"


def list_rows(conn: Conn) -> list[dict[str, Any]]:
    require_installed(conn)
    return [dict(r) for r in conn.execute(q("config_list"))]


def _synced(conn: Conn, table_name: str | None) -> list[dict[str, str]]:
    if table_name is not None:
        problems = conn.execute(q("problems_for"), {"table_name": table_name}).fetchall()
        if problems:
            raise ConfigError(f"{table_name}: {problems[0]['problem']}")
    try:
        return [dict(r) for r in conn.execute(q("sync"), {"apply": True})]
    except psycopg.errors.InvalidParameterValue as exc:
        raise ConfigError(first_line(str(exc))) from None


def add(
    conn: Conn,
    table_name: str,
    *,
    category: str,
    path: TablePath,
    enabled: bool = True,
    notes: str | None = None,
) -> list[dict[str, str]]:
    require_installed(conn)
    with conn.transaction():
        if _find(conn, table_name) is not None:
            raise ConfigError(f"{table_name} is already in simulation_table_config")
        try:
            conn.execute(
                q("config_insert"),
                {
                    "table_name": table_name,
                    "category": category,
                    "has_tenant_id": path.has_tenant_id,
                    "has_patient_id": path.has_patient_id,
                    "parent_table": path.parent_table,
                    "parent_column": path.parent_column,
                    "enabled": enabled,
                    "notes": notes,
                },
            )
        except psycopg.errors.IntegrityError as exc:
            raise ConfigError(first_line(str(exc))) from None
        return _synced(conn, table_name if enabled else None)


def _find(conn: Conn, table_name: str) -> dict[str, Any] | None:
    rows = conn.execute(
        q("config_find"), {"name": table_name, "qualified": qualified(table_name)}
    ).fetchall()
    return dict(rows[0]) if rows else None


def set_enabled(conn: Conn, table_name: str, enabled: bool) -> list[dict[str, str]]:
    require_installed(conn)
    with conn.transaction():
        row = _find(conn, table_name)
        if row is None:
            raise ConfigError(f"{table_name} is not in simulation_table_config")
        conn.execute(q("config_set_enabled"), {"enabled": enabled, "id": row["config_id"]})
        return _synced(conn, row["table_name"] if enabled else None)


def retire(conn: Conn, table_name: str) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """Take a dropped table out of the config and out of capture, keeping its history."""
    require_installed(conn)
    with conn.transaction():
        try:
            row = conn.execute(q("config_retire"), {"table_name": table_name}).fetchone()
        except psycopg.errors.InvalidParameterValue as exc:
            raise ConfigError(first_line(str(exc))) from None
        assert row is not None
        retired: dict[str, Any] = row["retired"]
        return retired, _synced(conn, None)


def discover(conn: Conn, *, apply: bool = False) -> dict[str, Any]:
    """Propose a config row for every tenant-scoped table not yet listed.

    With apply, the proposals whose tenant path resolves are inserted and
    attached; those that do not resolve are reported and left out.
    """
    require_installed(conn)
    with conn.transaction():
        found = [dict(r) for r in conn.execute(q("discover"))]
    added: list[str] = []
    skipped: list[dict[str, str]] = []
    actions: list[dict[str, str]] = []
    if apply:
        with conn.transaction():
            pending = [row for row in found if not row["configured"]]
            # A child's path goes through its parent, so parents must be in
            # first: repeat passes until one adds nothing.
            while pending:
                reasons: dict[str, str] = {}
                for row in pending:
                    try:
                        _insert_proposal(conn, row)
                    except ConfigError as exc:
                        reasons[row["table_name"]] = str(exc)
                        continue
                    added.append(row["table_name"])
                left = [row for row in pending if row["table_name"] in reasons]
                if len(left) == len(pending):
                    skipped = [{"table_name": t, "reason": r} for t, r in reasons.items()]
                    break
                pending = left
            actions = _synced(conn, None)
    return {"tables": found, "added": added, "skipped": skipped, "actions": actions}


def _insert_proposal(conn: Conn, row: dict[str, Any]) -> None:
    with conn.transaction():
        conn.execute(
            q("config_insert"),
            {
                "table_name": row["table_name"],
                "category": "discovered",
                "has_tenant_id": row["has_tenant_id"],
                "has_patient_id": row["has_patient_id"],
                "parent_table": row["parent_table"],
                "parent_column": row["parent_column"],
                "enabled": True,
                "notes": f"added by simtrail discovery: {row['reaches_tenant']}",
            },
        )
        problems = conn.execute(q("problems_for"), {"table_name": row["table_name"]}).fetchall()
        if problems:
            raise ConfigError(problems[0]["problem"])
