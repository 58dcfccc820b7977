"""The benchmark's SQL, kept in .sql files beside this module.

Named blocks (``-- name: NAME``) are read with simtrail's own loader; table and
other object names appear as ``{placeholders}`` and are filled with
``psycopg.sql.Identifier`` by the caller.
"""

from __future__ import annotations

from psycopg import sql

from simtrail.sqlfile import query as _query
from simtrail.sqlfile import read

__all__ = ["query", "script"]


def query(filename: str, name: str) -> sql.SQL:
    return _query(__name__, filename, name)


def script(filename: str) -> bytes:
    """A whole file, sent as one multi-statement batch (bytes: no parameters)."""
    return read(__name__, filename).encode()
