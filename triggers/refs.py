"""Declared references and copy rules: what `config ref` and `config rule` edit.

The checks live in SQL (simtrail.add_reference, simtrail.set_copy_rule, …),
which refuse in one line and store nothing; this module parses the
TABLE.COLUMN arguments the way PostgreSQL parses identifiers and turns the
refusals into errors the CLI prints.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg

from simtrail.db import Conn
from simtrail.errors import ConfigError
from simtrail.settings import first_line
from simtrail.sqlfile import query
from simtrail.triggers.installer import PACKAGE, installed_version, require_installed

# The first schema version with simtrail.refs and simtrail.copy_rules.
REFS_VERSION = 12
_PLAIN = re.compile(r"[a-z_][a-z0-9_$]*")
_UNQUOTED = re.compile(r"[^\W\d][\w$]*")


def _q(name: str) -> psycopg.sql.SQL:
    return query(PACKAGE, "sql/refs_queries.sql", name)


def split_name(text: str) -> list[str]:
    """The dot-separated parts of a name, as PostgreSQL reads them.

    A part in double quotes keeps its case, dots and spaces (`""` is a quote);
    any other part is folded to lower case.
    """
    parts: list[str] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i < n and text[i] == '"':
            end = i + 1
            part = ""
            while True:
                close = text.find('"', end)
                if close < 0:
                    raise ConfigError(f"{text!r}: unterminated quoted identifier")
                part += text[end:close]
                if text.startswith('""', close):
                    part += '"'
                    end = close + 2
                    continue
                i = close + 1
                break
            if not part:
                raise ConfigError(f"{text!r}: empty quoted identifier")
        else:
            match = _UNQUOTED.match(text, i)
            if not match:
                raise ConfigError(f"{text!r} is not a valid name")
            part = match.group().lower()
            i = match.end()
        parts.append(part)
        while i < n and text[i].isspace():
            i += 1
        if i == n:
            return parts
        if text[i] != ".":
            raise ConfigError(f"{text!r} is not a valid name")
        i += 1


def quote(part: str) -> str:
    """One identifier as SQL spells it: bare when plain, else double-quoted."""
    return part if _PLAIN.fullmatch(part) else '"' + part.replace('"', '""') + '"'


def parse_column(text: str) -> tuple[str, str]:
    """TABLE.COLUMN or SCHEMA.TABLE.COLUMN as (table, column): the last part is the column."""
    parts = split_name(text)
    if len(parts) not in (2, 3):
        raise ConfigError(f"{text!r}: expected TABLE.COLUMN or SCHEMA.TABLE.COLUMN")
    return ".".join(quote(p) for p in parts[:-1]), parts[-1]


def parse_target(conn: Conn, text: str) -> tuple[str, str | None]:
    """--references TABLE[.COLUMN] as (table, column or None for the primary key).

    Two parts name a table when such a table exists (`public.patients`),
    else a table and its column (`patients.patient_id`).
    """
    parts = split_name(text)
    if len(parts) == 1:
        return quote(parts[0]), None
    if len(parts) == 3:
        return f"{quote(parts[0])}.{quote(parts[1])}", parts[2]
    if len(parts) != 2:
        raise ConfigError(
            f"--references {text!r}: expected TABLE, TABLE.COLUMN or SCHEMA.TABLE[.COLUMN]"
        )
    as_table = f"{quote(parts[0])}.{quote(parts[1])}"
    row = conn.execute(_q("relation_exists"), {"name": as_table}).fetchone()
    if row and row["present"]:
        return as_table, None
    return quote(parts[0]), parts[1]


def _one(conn: Conn, name: str, params: dict[str, Any]) -> dict[str, Any]:
    require_installed(conn)
    try:
        with conn.transaction():
            row = conn.execute(_q(name), params).fetchone()
    except psycopg.errors.InvalidParameterValue as exc:
        raise ConfigError(first_line(exc.diag.message_primary or str(exc))) from None
    assert row is not None
    result: dict[str, Any] = row["result"]
    return result


def add_reference(conn: Conn, column: str, references: str) -> dict[str, Any]:
    """Declare that COLUMN holds keys of REFERENCES; returns what was stored and the matches."""
    table, name = parse_column(column)
    require_installed(conn)
    ref_table, ref_column = parse_target(conn, references)
    params = {"table": table, "column": name, "ref_table": ref_table, "ref_column": ref_column}
    return _one(conn, "ref_add", params)


def remove_reference(conn: Conn, column: str) -> dict[str, Any]:
    table, name = parse_column(column)
    return _one(conn, "ref_remove", {"table": table, "column": name})


def _rows(conn: Conn, name: str) -> list[dict[str, Any]]:
    with conn.transaction():
        return [dict(r) for r in conn.execute(_q(name))]


def list_references(conn: Conn) -> list[dict[str, Any]]:
    """Every declared reference; `problem` says why one no longer holds (else None)."""
    require_installed(conn)
    return _rows(conn, "ref_list")


def set_rule(conn: Conn, column: str, rule: str) -> dict[str, Any]:
    """Store what a copy writes into COLUMN: keep, default, null or sql:EXPR."""
    table, name = parse_column(column)
    return _one(conn, "rule_set", {"table": table, "column": name, "rule": rule})


def remove_rule(conn: Conn, column: str) -> dict[str, Any]:
    table, name = parse_column(column)
    return _one(conn, "rule_remove", {"table": table, "column": name})


def list_rules(conn: Conn) -> list[dict[str, Any]]:
    """Every copy rule as typed (`on_copy`); `problem` says why one no longer applies."""
    require_installed(conn)
    return _rows(conn, "rule_list")


def candidates(conn: Conn) -> list[dict[str, Any]]:
    """Columns that look like undeclared references, each with the command declaring it.

    Empty on a schema older than the references (run `simtrail install`).
    """
    if installed_version(conn) < REFS_VERSION:
        return []
    return _rows(conn, "ref_candidates")
