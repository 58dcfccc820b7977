"""simulation_table_config: list, add, enable, disable and discover rows.

Every change is checked and, when simtrail is installed, the triggers are
synced in the same transaction: a bad row is refused and nothing is written.
The table is adopted as it is: columns the user made NOT NULL without a
default are filled from options, or the change is refused naming the option.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from simtrail.db import Conn
from simtrail.errors import ConfigError
from simtrail.settings import first_line
from simtrail.triggers import refs
from simtrail.triggers.installer import q, refusal_line, require_installed, split_refused

# Columns simtrail sets itself, and the option that sets each of the others.
PATH_COLUMNS = (
    "table_name",
    "has_tenant_id",
    "has_patient_id",
    "parent_table",
    "parent_column",
    "enabled",
)
OWN_OPTIONS = {
    "category": "--category TEXT",
    "delete_order": "--delete-order N",
    "notes": "--notes TEXT",
}


@dataclass(frozen=True)
class TablePath:
    """How a new config row reaches its tenant."""

    has_tenant_id: bool = False
    has_patient_id: bool = False
    parent_table: str | None = None
    parent_column: str | None = None


@dataclass(frozen=True)
class Fill:
    """Values for the config table's own columns, beyond the tenant path."""

    category: str | None = None
    delete_order: int | None = None
    # --set COLUMN=VALUE, for columns the user's table has and simtrail does not know.
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Synced:
    """What a config change did to the triggers, and the other rows it left alone."""

    actions: list[dict[str, str]]
    refused: list[dict[str, str]]


def qualified(name: str) -> str:
    return name if "." in name else f"public.{name}"


def list_rows(conn: Conn) -> list[dict[str, Any]]:
    require_installed(conn)
    return [dict(r) for r in conn.execute(q("config_list"))]


def _problems(conn: Conn) -> set[tuple[str, str]]:
    return {(r["table_name"], r["problem"]) for r in conn.execute(q("config_problems"))}


def _synced(conn: Conn, table_name: str | None, before: set[tuple[str, str]]) -> Synced:
    """Sync after a config edit; refuse the edit if it broke a row that was fine.

    Rows that were already broken are left to sync, which refuses only them.
    """
    if table_name is not None:
        problems = conn.execute(q("problems_for"), {"table_name": table_name}).fetchall()
        if problems:
            raise ConfigError(f"{table_name}: {problems[0]['problem']}")
    new = sorted(_problems(conn) - before)
    if new:
        raise ConfigError(
            refusal_line({"table_name": new[0][0], "problem": new[0][1]})
            + (f" (and {len(new) - 1} more)" if len(new) > 1 else "")
        )
    try:
        rows = [dict(r) for r in conn.execute(q("sync"), {"apply": True})]
    except psycopg.errors.InvalidParameterValue as exc:
        raise ConfigError(first_line(str(exc))) from None
    return Synced(*split_refused(rows))


def _render(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


class RowValues:
    """The values one new config row gets, and where each came from."""

    def __init__(self, conn: Conn, fill: Fill, fallback_category: str) -> None:
        self.columns = {r["column_name"]: dict(r) for r in conn.execute(q("config_columns"))}
        self.given: dict[str, Any] = {}
        self.sources: dict[str, str] = {}
        for name, value in fill.extra.items():
            if name in PATH_COLUMNS:
                raise ConfigError(f"--set {name}: simtrail sets {name} itself")
            if name in OWN_OPTIONS:
                raise ConfigError(f"--set {name}: use {OWN_OPTIONS[name].split()[0]}")
            info = self.columns.get(name)
            if info is None or info["is_key"]:
                raise ConfigError(f"--set {name}: simulation_table_config has no such column")
            self.given[name] = value
            self.sources[name] = "--set"
        if fill.category is not None:
            self.given["category"] = fill.category
            self.sources["category"] = "--category"
        elif not self.columns.get("category", {}).get("has_default"):
            self.given["category"] = fallback_category
            self.sources["category"] = "simtrail's default; --category to choose"
        if fill.delete_order is not None:
            self.given["delete_order"] = fill.delete_order
            self.sources["delete_order"] = "--delete-order"

    def check(self, notes_given: bool) -> None:
        """Refuse, naming the options, when a NOT NULL column would stay empty."""
        have = set(self.given) | set(PATH_COLUMNS) | ({"notes"} if notes_given else set())
        missing = [c for c, info in self.columns.items() if info["required"] and c not in have]
        if not missing:
            return
        options = ", ".join(OWN_OPTIONS.get(c, f"--set {c}=VALUE") for c in missing)
        if len(missing) == 1:
            raise ConfigError(
                f"simulation_table_config.{missing[0]} is NOT NULL and has no default:"
                f" give it with {options}"
            )
        raise ConfigError(
            f"simulation_table_config columns {', '.join(missing)} are NOT NULL and have no"
            f" default: give them with {options}"
        )

    def row(
        self, table_name: str, path: TablePath, enabled: bool, notes: str | None
    ) -> dict[str, Any]:
        values: dict[str, Any] = {
            "table_name": table_name,
            "has_tenant_id": path.has_tenant_id,
            "has_patient_id": path.has_patient_id,
            "parent_table": path.parent_table,
            "parent_column": path.parent_column,
            "enabled": enabled,
            **self.given,
        }
        if notes is not None:
            values["notes"] = notes
        return values

    def describe(self, stored: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Each value simtrail chose or took from a default, with where it came from."""
        out = [{"column": c, "value": stored.get(c), "source": s} for c, s in self.sources.items()]
        for name, info in self.columns.items():
            if name in self.sources or name in PATH_COLUMNS or info["is_key"]:
                continue
            if info["not_null"] and name in stored and name not in self.given and name != "notes":
                out.append({"column": name, "value": stored[name], "source": "column default"})
        return out


def describe_values(values: Sequence[Mapping[str, Any]]) -> str:
    return ", ".join(f"{v['column']}={_render(v['value'])} ({v['source']})" for v in values)


def _insert(conn: Conn, values: dict[str, Any]) -> dict[str, Any]:
    try:
        with conn.transaction():
            row = conn.execute(q("config_insert"), {"values": Jsonb(values)}).fetchone()
    except psycopg.errors.IntegrityError as exc:
        raise ConfigError(f"{values['table_name']}: {first_line(str(exc))}") from None
    except psycopg.errors.DataError as exc:
        raise ConfigError(f"{values['table_name']}: {first_line(str(exc))}") from None
    stored: dict[str, Any] = row["row"] if row else {}
    return stored


def add(
    conn: Conn,
    table_name: str,
    *,
    path: TablePath,
    fill: Fill | None = None,
    enabled: bool = True,
    notes: str | None = None,
) -> dict[str, Any]:
    require_installed(conn)
    with conn.transaction():
        if _find(conn, table_name) is not None:
            raise ConfigError(f"{table_name} is already in simulation_table_config")
        before = _problems(conn)
        planned = RowValues(conn, fill or Fill(), "clinical")
        planned.check(notes is not None)
        stored = _insert(conn, planned.row(table_name, path, enabled, notes))
        synced = _synced(conn, table_name if enabled else None, before)
    return {
        "values": planned.describe(stored),
        "actions": synced.actions,
        "refused": synced.refused,
    }


def _find(conn: Conn, table_name: str) -> dict[str, Any] | None:
    rows = conn.execute(
        q("config_find"), {"name": table_name, "qualified": qualified(table_name)}
    ).fetchall()
    return dict(rows[0]) if rows else None


def set_enabled(conn: Conn, table_name: str, enabled: bool) -> Synced:
    require_installed(conn)
    with conn.transaction():
        row = _find(conn, table_name)
        if row is None:
            raise ConfigError(f"{table_name} is not in simulation_table_config")
        before = _problems(conn)
        conn.execute(q("config_set_enabled"), {"enabled": enabled, "id": row["config_id"]})
        return _synced(conn, row["table_name"] if enabled else None, before)


def _check_tables(conn: Conn, names: Sequence[str], option: str) -> list[str]:
    for name in names:
        row = conn.execute(q("table_exists"), {"qualified": qualified(name)}).fetchone()
        if not row or not row["present"]:
            raise ConfigError(f"{option} {name}: no such table")
    return [qualified(n) for n in names]


def retire(conn: Conn, table_name: str) -> tuple[dict[str, Any], Synced]:
    """Take a dropped table out of the config and out of capture, keeping its history."""
    require_installed(conn)
    with conn.transaction():
        before = _problems(conn)
        try:
            row = conn.execute(q("config_retire"), {"table_name": table_name}).fetchone()
        except psycopg.errors.InvalidParameterValue as exc:
            raise ConfigError(first_line(str(exc))) from None
        assert row is not None
        retired: dict[str, Any] = row["retired"]
        return retired, _synced(conn, None, before)


def discover(
    conn: Conn,
    *,
    apply: bool = False,
    include: Sequence[str] = (),
    fill: Fill | None = None,
) -> dict[str, Any]:
    """Propose a config row for every table of tenant data not yet listed.

    With apply, the proposals whose tenant path resolves are inserted and
    attached; those that do not resolve are reported and left out.
    """
    require_installed(conn)
    with conn.transaction():
        wanted = _check_tables(conn, include, "--include")
        found = [dict(r) for r in conn.execute(q("discover"), {"include": wanted})]
        # Among captured tables only: declaring a reference needs both ends captured.
        references = refs.candidates(conn)
    tables = [_public(r) for r in found if r["status"] == "proposed" or r["configured"]]
    result: dict[str, Any] = {
        "tables": tables,
        "not_tenant_data": [
            {"table_name": r["table_name"], "reason": r["reason"]}
            for r in found
            if r["status"] == "not_tenant_data" and not r["configured"]
        ],
        "ignored": [
            {"table_name": r["table_name"], "reason": r["reason"]}
            for r in found
            if r["status"] == "ignored" and not r["configured"]
        ],
        "references": references,
        "added": [],
        "skipped": [],
        "values": [],
        "actions": [],
        "refused": [],
    }
    if apply:
        with conn.transaction():
            planned = RowValues(conn, fill or Fill(), "discovered")
            planned.check(notes_given=True)
            pending = [r for r in found if r["status"] == "proposed" and not r["configured"]]
            result.update(_apply(conn, planned, pending, _problems(conn)))
    return result


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: row[k]
        for k in (
            "table_name",
            "reaches_tenant",
            "has_tenant_id",
            "has_patient_id",
            "parent_table",
            "parent_column",
            "configured",
        )
    }


def _apply(
    conn: Conn, planned: RowValues, pending: list[dict[str, Any]], before: set[tuple[str, str]]
) -> dict[str, Any]:
    added: list[str] = []
    skipped: list[dict[str, str]] = []
    stored: dict[str, Any] = {}
    # A child's path goes through its parent, so parents must be in first:
    # repeat passes until one adds nothing.
    while pending:
        reasons: dict[str, str] = {}
        for row in pending:
            try:
                stored = _insert_proposal(conn, planned, row)
            except ConfigError as exc:
                reasons[row["table_name"]] = str(exc)
                continue
            added.append(row["table_name"])
        left = [row for row in pending if row["table_name"] in reasons]
        if len(left) == len(pending):
            skipped = [{"table_name": t, "reason": r} for t, r in reasons.items()]
            break
        pending = left
    synced = _synced(conn, None, before)
    return {
        "added": added,
        "skipped": skipped,
        "values": planned.describe(stored) if added else [],
        "actions": synced.actions,
        "refused": synced.refused,
    }


def _insert_proposal(conn: Conn, planned: RowValues, row: dict[str, Any]) -> dict[str, Any]:
    path = TablePath(
        row["has_tenant_id"], row["has_patient_id"], row["parent_table"], row["parent_column"]
    )
    notes = f"added by simtrail discovery: {row['reaches_tenant']}"
    with conn.transaction():
        stored = _insert(conn, planned.row(row["table_name"], path, True, notes))
        problems = conn.execute(q("problems_for"), {"table_name": row["table_name"]}).fetchall()
        if problems:
            raise ConfigError(problems[0]["problem"])
    return stored


def ignore(conn: Conn, table_name: str, reason: str | None) -> str:
    require_installed(conn)
    try:
        with conn.transaction():
            params = {"table": table_name, "reason": reason}
            row = conn.execute(q("ignore_table"), params).fetchone()
    except psycopg.errors.InvalidParameterValue as exc:
        raise ConfigError(first_line(str(exc))) from None
    return str(row["table_name"]) if row else table_name


def unignore(conn: Conn, table_name: str) -> str:
    require_installed(conn)
    try:
        with conn.transaction():
            row = conn.execute(q("unignore_table"), {"table": table_name}).fetchone()
    except psycopg.errors.InvalidParameterValue as exc:
        raise ConfigError(first_line(str(exc))) from None
    return str(row["table_name"]) if row else table_name


def ignored(conn: Conn) -> list[dict[str, Any]]:
    require_installed(conn)
    return [dict(r) for r in conn.execute(q("ignored_list"))]
