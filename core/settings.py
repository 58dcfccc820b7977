"""Where the database is: --dsn, else DATABASE_URL, else libpq's PG* variables."""

from __future__ import annotations

import os
from collections.abc import Mapping

import psycopg.conninfo

from simtrail.errors import ConfigError

PG_VARIABLES = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE")


def resolve_dsn(explicit: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The DSN to use, or None when nothing names a server.

    An empty string is a valid libpq conninfo that defers to the PG* variables,
    so when only those are set we return "" and let libpq read them.
    """
    env = os.environ if environ is None else environ
    dsn = explicit if explicit else env.get("DATABASE_URL") or None
    if dsn is None and any(env.get(name) for name in PG_VARIABLES):
        dsn = ""
    if dsn:
        validate_dsn(dsn)
    return dsn


def validate_dsn(dsn: str) -> None:
    try:
        psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"malformed DSN: {first_line(str(exc))}") from None


def redact(dsn: str) -> str:
    """The DSN with any password hidden, for messages and logs."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<malformed DSN>"
    if "password" in params:
        params["password"] = "***"  # noqa: S105 - a mask, not a secret
    return psycopg.conninfo.make_conninfo("", **{k: str(v) for k, v in params.items()})


def first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else text.strip()
