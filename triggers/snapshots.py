"""Snapshot documents: a tenant's rows as one JSON document, and loading one.

The shape is the first user's `simulation_templates.snapshot_data`:
`{"<table>": [rows…], "snapshot_metadata": {…}}`. The work happens in SQL
(simtrail.export_snapshot, simtrail.import_snapshot), so the app can call
the same functions; this module adds the transaction and readable errors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from simtrail.db import Conn
from simtrail.errors import SimtrailError
from simtrail.sqlfile import query
from simtrail.triggers.installer import PACKAGE, require_installed
from simtrail.triggers.rewinding import BadInputError, translate


def _q(name: str) -> psycopg.sql.SQL:
    return query(PACKAGE, "sql/snapshot_queries.sql", name)


@dataclass(frozen=True)
class Exported:
    # The document as PostgreSQL printed it (numbers exact, keys in jsonb order).
    text: str
    metadata: dict[str, Any]

    @property
    def row_count(self) -> int:
        return sum(int(t["rows"]) for t in self.metadata["tables"].values())


def export(conn: Conn, tenant: str, at: str | None = None) -> Exported:
    """The tenant's rows of every captured table, now or at target `at`.

    Read in one REPEATABLE READ snapshot and rolled back: nothing is written,
    and the class's writers are not held up.
    """
    require_installed(conn)
    try:
        with conn.transaction(force_rollback=True):
            conn.execute(_q("repeatable_read"))
            row = conn.execute(_q("export"), {"tenant": tenant, "at": at}).fetchone()
    except psycopg.Error as exc:
        raise translate(exc) from None
    assert row is not None
    return Exported(text=row["document"], metadata=row["metadata"])


def parse_document(text: str, source: str) -> None:
    """Refuse text that is not JSON, naming where it breaks (the SQL side checks the rest)."""
    try:
        json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise BadInputError(
            f"{source} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise BadInputError(f"{source} nests too deeply to be a snapshot document") from None


def import_document(
    conn: Conn,
    text: str,
    to_tenant: str,
    *,
    dry_run: bool = False,
    skip_unknown: bool = False,
    mark: str | None = None,
    source: str = "the document",
) -> dict[str, Any]:
    """Load a document into `to_tenant` in one transaction (rolled back for a dry run)."""
    parse_document(text, source)
    options: dict[str, Any] = {"dry_run": dry_run, "skip_unknown": skip_unknown}
    if mark is not None:
        options["mark"] = mark
    require_installed(conn)
    try:
        with conn.transaction(force_rollback=dry_run):
            row = conn.execute(
                _q("import"), {"doc": text, "to": to_tenant, "options": Jsonb(options)}
            ).fetchone()
    except psycopg.Error as exc:
        raise translate(exc) from None
    assert row is not None
    report: dict[str, Any] = row["report"]
    return report


def read_document(path: str, data: bytes) -> str:
    """A file's bytes as text: UTF-8, with or without a byte-order mark."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SimtrailError(f"{path} is not UTF-8 text (byte {exc.start})") from None
