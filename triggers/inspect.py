"""What `doctor` and `status` report about an installation."""

from __future__ import annotations

from typing import Any

from simtrail import __version__
from simtrail.db import Conn
from simtrail.triggers import doctor_fixes
from simtrail.triggers.installer import installed_version, latest_version, q


def doctor(conn: Conn) -> dict[str, Any]:
    """Findings, sorted by severity, table and kind, each with the command that fixes it.

    `ok` is False when any finding is an error.
    """
    version = installed_version(conn)
    if version == 0:
        findings = [
            {
                "severity": "error",
                "kind": "not_installed",
                "table_name": None,
                "detail": "schema simtrail is missing; run `simtrail install`",
            }
        ]
    else:
        with conn.transaction():
            findings = [dict(r) for r in conn.execute(q("doctor"))]
        if version < latest_version():
            findings.insert(
                0,
                {
                    "severity": "error",
                    "kind": "outdated_schema",
                    "table_name": None,
                    "detail": (
                        f"schema version {version} < {latest_version()}; run `simtrail install`"
                    ),
                },
            )
    findings = doctor_fixes.with_fixes(conn if version else None, findings)
    return {
        "ok": not any(f["severity"] == "error" for f in findings),
        "installed_version": version,
        "findings": findings,
    }


def status(conn: Conn) -> dict[str, Any]:
    version = installed_version(conn)
    if version == 0:
        return {"installed": False, "package_version": __version__}
    with conn.transaction():
        tables = [dict(r) for r in conn.execute(q("captured_tables"))]
        log = {r["table_name"]: dict(r) for r in conn.execute(q("log_summary"))}
        unattributed = conn.execute(q("unattributed_changes")).fetchone()
    covered = []
    for t in tables:
        stats = log.get(t["table_name"], {})
        covered.append(
            {
                "table_name": t["table_name"],
                "reaches_tenant": describe_path(t["tenant_path"]),
                "changes": stats.get("changes", 0),
                "oldest": stats.get("oldest"),
                "newest": stats.get("newest"),
            }
        )
    # Tables no longer captured may still have history in the log.
    for name, stats in log.items():
        if name not in {t["table_name"] for t in tables}:
            covered.append(
                {
                    "table_name": name,
                    "reaches_tenant": "(no longer captured)",
                    "changes": stats["changes"],
                    "oldest": stats["oldest"],
                    "newest": stats["newest"],
                }
            )
    oldest = [c["oldest"] for c in covered if c["oldest"] is not None]
    newest = [c["newest"] for c in covered if c["newest"] is not None]
    return {
        "installed": True,
        "package_version": __version__,
        "schema_version": version,
        "tables": covered,
        "total_changes": sum(c["changes"] for c in covered),
        "changes_without_tenant": unattributed["n"] if unattributed else 0,
        "oldest_change": min(oldest) if oldest else None,
        "newest_change": max(newest) if newest else None,
        "daemon": daemon_status(conn, version),
    }


def daemon_status(conn: Conn, version: int) -> dict[str, Any] | None:
    """Whether a daemon leads, its last tick, and the log and archive sizes."""
    if version < 3:
        return None
    row = conn.execute(q("daemon_status")).fetchone()
    if not row:
        return None
    lease = conn.execute(q("daemon_leader")).fetchone() if row["has_lease"] else None
    leader = lease["holder"] if lease else None
    return {"leader": leader, "last_tick": row["last_tick"], **row["stats"]}


def describe_path(path: dict[str, Any]) -> str:
    steps = [f"{h['column']} → {h['parent']}" for h in path.get("hops", [])]
    steps.append(f"{path.get('tenant_table', '?')}.{path.get('tenant_column', 'tenant_id')}")
    return " → ".join(steps) if len(steps) > 1 else f"own {path.get('tenant_column')}"
