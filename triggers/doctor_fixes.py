"""What `doctor` suggests for each kind of finding, and the order it lists them in."""

from __future__ import annotations

import re
from typing import Any

from simtrail.db import Conn
from simtrail.triggers.installer import q

SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}
CONFIG_TABLE = "public.simulation_table_config"
# Findings that `simtrail install` repairs by itself.
INSTALL_FIXES = {
    "not_installed",
    "outdated_schema",
    "missing_trigger",
    "disabled_trigger",
    "outdated_trigger",
    "stray_trigger",
}
# Findings whose detail ends with the command that fixes them, in backquotes.
COMMAND_IN_DETAIL = {"undeclared_reference", "broken_reference", "broken_copy_rule"}
_TRAILING_COMMAND = re.compile(r"`([^`]+)`$")


def sort_key(finding: dict[str, Any]) -> tuple[int, str, str]:
    """Severity, then table (findings about no table first), then kind.

    Config rows may name a table without its schema, meaning public.
    """
    table = finding["table_name"] or ""
    if table and "." not in table:
        table = f"public.{table}"
    return (SEVERITY_ORDER.get(finding["severity"], len(SEVERITY_ORDER)), table, finding["kind"])


def with_fixes(conn: Conn | None, findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The findings, sorted, each with `fix`: the command that fixes it (None if unknown)."""
    proposals = _proposals(conn) if any(f["kind"] == "uncovered" for f in findings) else {}
    out = []
    for finding in findings:
        fix = suggest(conn, finding, proposals)
        out.append({**finding, "fix": fix})
    return sorted(out, key=sort_key)


def suggest(
    conn: Conn | None, finding: dict[str, Any], proposals: dict[str, dict[str, Any]]
) -> str | None:
    kind, table = finding["kind"], finding["table_name"]
    if kind in INSTALL_FIXES:
        return "simtrail install"
    if kind == "config":
        return (
            f"correct the row of {table} in {CONFIG_TABLE} (UPDATE or DELETE it in SQL),"
            f" or `simtrail config disable {table}`"
        )
    if kind == "uncovered":
        found = proposals.get(table)
        return _config_add(table, found) if found else "simtrail config discover"
    if kind == "config_writable" and conn is not None:
        return _revoke(conn)
    if kind == "dropped_table":
        return f"simtrail config retire {table}"
    if kind == "renamed_column":
        names = re.match(r"column (\S+) was renamed to (\S+);", finding["detail"])
        if names:
            old, new = names.groups()
            return (
                f"to rewind across the rename, first ALTER TABLE {table} RENAME COLUMN"
                f" {new} TO {old}; rewinds to later targets need nothing"
            )
    if kind == "capture_gap":
        if finding["detail"].startswith("not captured since"):
            return f"simtrail config enable {table}, then simtrail install"
        return "nothing to repair; rewinds to points before the window's end need --force"
    if kind in COMMAND_IN_DETAIL and (command := _TRAILING_COMMAND.search(finding["detail"])):
        return command.group(1)
    if kind == "rebase":
        if finding["severity"] == "error":
            return "simtrail install"
        return "mark the classes you will rewind again (`simtrail mark create --replace`)"
    return None


def _proposals(conn: Conn | None) -> dict[str, dict[str, Any]]:
    if conn is None:
        return {}
    with conn.transaction():
        return {r["table_name"]: dict(r) for r in conn.execute(q("discover"), {"include": []})}


def _config_add(table: str, found: dict[str, Any]) -> str:
    if found["has_tenant_id"]:
        how = "--tenant-column"
    elif found["has_patient_id"]:
        how = "--via-patient"
    else:
        how = f"--parent {found['parent_table']} --parent-column {found['parent_column']}"
    return f"simtrail config add {table} {how}"


def _revoke(conn: Conn) -> str:
    with conn.transaction():
        writers = [dict(r) for r in conn.execute(q("config_table_writers"))]
    rights = ["INSERT", "UPDATE", "DELETE", "TRUNCATE"]
    held = [p for p in rights if any(p in w["privileges"] for w in writers)]
    grantees = ", ".join(w["grantee"] for w in writers)
    return f"REVOKE {', '.join(held)} ON {CONFIG_TABLE} FROM {grantees}"
