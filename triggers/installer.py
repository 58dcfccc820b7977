"""Install, upgrade and remove simtrail in one database.

Everything happens in one transaction: a failure, or --dry-run, leaves the
database exactly as it was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import psycopg

from simtrail.db import Conn
from simtrail.errors import ConfigError, NotInstalledError, SimtrailError
from simtrail.settings import first_line
from simtrail.sqlfile import query, read

PACKAGE = "simtrail.triggers"
_VERSION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Re-applied on every install, in this order, after the versioned files.
FUNCTION_FILES = (
    "sql/locks.sql",
    "sql/config.sql",
    "sql/discover.sql",
    "sql/capture.sql",
    "sql/seal.sql",
    "sql/prune.sql",
    "sql/verify.sql",
    "sql/daemon.sql",
    "sql/rebase.sql",
    "sql/time_targets.sql",
    "sql/rewind.sql",
    "sql/graph.sql",
    "sql/refs.sql",
    "sql/copy.sql",
    "sql/copy_phases.sql",
    "sql/copy_insert.sql",
    "sql/clone.sql",
    "sql/subtree.sql",
    "sql/purge.sql",
    "sql/diff.sql",
    "sql/snapshot.sql",
    "sql/history.sql",
)
# The seed's columns; an adopted table must have at least these.
CONFIG_COLUMNS = {
    "table_name": "text",
    "category": "text",
    "has_tenant_id": "boolean",
    "has_patient_id": "boolean",
    "parent_table": "text",
    "parent_column": "text",
    "requires_id_mapping": "boolean",
    "delete_order": "integer",
    "enabled": "boolean",
    "notes": "text",
}


@dataclass(frozen=True)
class Version:
    number: int
    name: str
    filename: str


@dataclass
class InstallReport:
    dry_run: bool
    from_version: int
    to_version: int
    created_config_table: bool
    actions: list[dict[str, str]] = field(default_factory=list)
    # Config rows left out of the sync, each with its problem.
    refused: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "created_config_table": self.created_config_table,
            "actions": self.actions,
            "refused": self.refused,
        }


def split_refused(rows: list[dict[str, str]]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """sync's rows as (actions taken, config rows refused)."""
    actions = [r for r in rows if r["action"] != "refuse"]
    refused = [
        {"table_name": r["table_name"], "problem": r["detail"]}
        for r in rows
        if r["action"] == "refuse"
    ]
    return actions, refused


def refusal_line(refused: dict[str, str]) -> str:
    return f"simulation_table_config row {refused['table_name']}: {refused['problem']}"


def q(name: str) -> psycopg.sql.SQL:
    return query(PACKAGE, "sql/queries.sql", name)


def script(filename: str) -> psycopg.sql.SQL:
    """A whole packaged .sql file, run as one multi-statement query."""
    return psycopg.sql.SQL(read(PACKAGE, filename))


def versions() -> list[Version]:
    found = []
    for entry in resources.files(PACKAGE).joinpath("sql/versions").iterdir():
        match = _VERSION_FILE.match(entry.name)
        if match:
            found.append(Version(int(match.group(1)), match.group(2), entry.name))
    found.sort(key=lambda v: v.number)
    return found


def latest_version() -> int:
    return versions()[-1].number


def installed_version(conn: Conn) -> int:
    """0 when simtrail is not installed."""
    row = conn.execute(q("schema_installed")).fetchone()
    if not row or not row["installed"]:
        return 0
    row = conn.execute(q("installed_version")).fetchone()
    return int(row["version"]) if row else 0


def require_installed(conn: Conn) -> int:
    version = installed_version(conn)
    if version == 0:
        raise NotInstalledError(
            "simtrail is not installed in this database; run `simtrail install`"
        )
    return version


def ensure_config_table(conn: Conn) -> bool:
    """Create simulation_table_config when missing; check it when present.

    Returns True when it was created.
    """
    row = conn.execute(q("config_table_exists")).fetchone()
    if row and row["present"]:
        columns = {r["name"]: r["type"] for r in conn.execute(q("config_table_columns"))}
        missing = [name for name in CONFIG_COLUMNS if name not in columns]
        if missing:
            raise ConfigError(
                "public.simulation_table_config exists but lacks column(s) "
                + ", ".join(missing)
                + "; add them or rename the table"
            )
        return False
    try:
        with conn.transaction():
            conn.execute(script("sql/config_table.sql"))
    except psycopg.errors.InsufficientPrivilege:
        role = conn.execute(q("current_role")).fetchone()
        name = role["name"] if role else "this role"
        raise ConfigError(
            f"public.simulation_table_config is missing and {name} may not create it:"
            f" create it as its owner, or GRANT CREATE ON SCHEMA public TO {name}"
        ) from None
    conn.execute(q("revoke_config_table"))
    for role in conn.execute(q("app_roles")).fetchall():
        conn.execute(
            psycopg.sql.SQL("REVOKE ALL ON public.simulation_table_config FROM {}").format(
                psycopg.sql.Identifier(role["name"])
            )
        )
    return True


def apply_schema(conn: Conn) -> tuple[int, int]:
    """Apply every versioned file newer than the installed version, then the functions."""
    before = installed_version(conn)
    for version in versions():
        if version.number > before:
            conn.execute(script(f"sql/versions/{version.filename}"))
            conn.execute(q("record_version"), {"version": version.number, "name": version.name})
    for filename in FUNCTION_FILES:
        conn.execute(script(filename))
    conn.execute(q("revoke_functions"))
    return before, installed_version(conn)


def install(conn: Conn, *, dry_run: bool = False) -> InstallReport:
    """Create or upgrade schema `simtrail` and attach capture to the config's tables."""
    if (before := installed_version(conn)) > latest_version():
        raise SimtrailError(
            f"database has simtrail schema version {before}, newer than this "
            f"release's {latest_version()}; upgrade simtrail"
        )
    try:
        with conn.transaction(force_rollback=dry_run):
            conn.execute(q("install_lock"))
            created = ensure_config_table(conn)
            before, after = apply_schema(conn)
            rows = [dict(r) for r in conn.execute(q("sync"), {"apply": True})]
    except psycopg.errors.InvalidParameterValue as exc:
        raise ConfigError(first_line(str(exc))) from None
    actions, refused = split_refused(rows)
    return InstallReport(dry_run, before, after, created, actions, refused)


def sync(conn: Conn, *, apply: bool = True) -> list[dict[str, str]]:
    """Attach and detach triggers to match the config (the daemon calls this too)."""
    require_installed(conn)
    try:
        with conn.transaction(force_rollback=not apply):
            return [dict(r) for r in conn.execute(q("sync"), {"apply": apply})]
    except psycopg.errors.InvalidParameterValue as exc:
        raise ConfigError(first_line(str(exc))) from None


def uninstall(conn: Conn, *, drop_log: bool = False, dry_run: bool = False) -> dict[str, Any]:
    """Remove every capture trigger; with drop_log, schema simtrail too.

    The application's tables and simulation_table_config are never touched.
    """
    require_installed(conn)
    with conn.transaction(force_rollback=dry_run):
        conn.execute(q("install_lock"))
        detached = [r["name"] for r in conn.execute(q("detach_everything"))]
        if drop_log:
            dependents = [r["object"] for r in conn.execute(q("outside_dependents"))]
            if dependents:
                raise SimtrailError(
                    "refusing to drop schema simtrail: "
                    + ", ".join(dependents[:5])
                    + (f" and {len(dependents) - 5} more" if len(dependents) > 5 else "")
                    + " depend on it; drop or change them first"
                )
            # The optional RPC wrappers in public would outlive the schema.
            conn.execute(query(PACKAGE, "sql/rpc_queries.sql", "rpc_remove"))
            conn.execute(q("drop_schema"))
    return {"dry_run": dry_run, "detached": sorted(set(detached)), "dropped_log": drop_log}
