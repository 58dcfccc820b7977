"""The optional PostgREST surface: public wrappers and the instructors they admit.

Schema simtrail stays unexposed. `install_rpc` puts thin SECURITY DEFINER
wrappers in schema public that check the JWT's `sub` against
simtrail.instructors before calling in; only `authenticated` may execute them.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg

from simtrail.db import Conn
from simtrail.errors import SimtrailError
from simtrail.settings import first_line
from simtrail.sqlfile import query
from simtrail.triggers.installer import PACKAGE, require_installed, script

_SUB = re.compile(r"^[^\x00-\x1f\x7f]{1,200}$")


class BadInstructorError(SimtrailError):
    """An empty or unprintable sub, or a tenant key its column type rejects."""


def _q(name: str) -> psycopg.sql.SQL:
    return query(PACKAGE, "sql/rpc_queries.sql", name)


def install_rpc(conn: Conn) -> list[dict[str, Any]]:
    """Create or refresh the wrappers; returns each with the roles that may run it."""
    with conn.transaction():
        require_installed(conn)
        try:
            conn.execute(script("sql/rpc.sql"))
        except psycopg.errors.UndefinedObject as exc:
            raise SimtrailError(first_line(exc.diag.message_primary or str(exc))) from exc
        return conn.execute(_q("rpc_installed")).fetchall()


def remove_rpc(conn: Conn) -> None:
    with conn.transaction():
        require_installed(conn)
        conn.execute(_q("rpc_remove"))


def rpc_status(conn: Conn) -> list[dict[str, Any]]:
    require_installed(conn)
    return conn.execute(_q("rpc_installed")).fetchall()


def _checked(sub: str) -> str:
    if not _SUB.match(sub):
        raise BadInstructorError("a sub must be 1 to 200 printable characters (the JWT's sub)")
    return sub


def _run(conn: Conn, name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    with conn.transaction():
        require_installed(conn)
        try:
            return conn.execute(_q(name), params).fetchall()
        except psycopg.errors.InvalidParameterValue as exc:
            raise BadInstructorError(first_line(exc.diag.message_primary or str(exc))) from exc


def add_instructor(conn: Conn, sub: str, tenant: str) -> bool:
    """True when added, False when the sub already was an instructor of the tenant."""
    return bool(_run(conn, "instructor_add", {"sub": _checked(sub), "tenant": tenant}))


def remove_instructor(conn: Conn, sub: str, tenant: str) -> None:
    if not _run(conn, "instructor_remove", {"sub": _checked(sub), "tenant": tenant}):
        raise BadInstructorError(f"{sub} is not an instructor of tenant {tenant}")


def list_instructors(conn: Conn, tenant: str | None) -> list[dict[str, Any]]:
    return _run(conn, "instructor_list", {"tenant": tenant})


def grant_role(conn: Conn, role: str, *, revoke: bool = False) -> None:
    """Let a dedicated database role (not an app role) call rewind, mark and history."""
    with conn.transaction():
        require_installed(conn)
        row = conn.execute(_q("role_is_superuser"), {"role": role}).fetchone()
        if row is None:
            raise BadInstructorError(f"role {role} does not exist; create it first")
        statement = _q("revoke_role" if revoke else "grant_role")
        conn.execute(statement.format(role=psycopg.sql.Identifier(role)))
