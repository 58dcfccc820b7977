"""A clone or copy that refuses writes nothing: no row, no log entry, no copy
record, no mark."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests import graphs
from tests.conftest import Server
from tests.fresh import copy_of, settle
from tests.graphs import A, B, C, Graph

SMALL = Graph(
    roots=[(0, 1, 0, 1), (0, None, 3, 2), (1, None, 1, 3)],
    children=[(0, 1, 3, False), (1, 0, 4, False), (2, None, 6, False)],
    grands=[(0, 1), (2, 4)],
    links=[(0, 1, 7, False)],
    notes=[(0, (1, 0, 1, 0, 0), 0, False), (1, (0, 0, 0, 0, 0), 1, False)],
    declared=frozenset(graphs.DECLARABLE),
    code_rule=graphs.CODE_RULES[0],
)
UNKNOWN = "f0000000-0000-4000-8000-000000000000"  # a valid key no tenant has


@pytest.fixture
def conn(server: Server) -> Iterator[graphs.Conn]:
    with (
        copy_of(graphs.template(server)) as db,
        psycopg.connect(db.dsn, autocommit=True) as connection,
    ):
        graphs.configure(connection, SMALL)
        graphs.load(connection, SMALL)
        yield connection
    settle()


def written(conn: graphs.Conn) -> dict[str, Any]:
    """Everything a copy could write: rows, the log, copies and key maps, marks."""
    counts = conn.execute(
        "SELECT (SELECT count(*) FROM simtrail.changes), (SELECT count(*) FROM simtrail.copies),"
        " (SELECT count(*) FROM simtrail.copy_keys), (SELECT count(*) FROM simtrail.marks),"
        " (SELECT count(*) FROM simtrail.copy_rows), (SELECT count(*) FROM simtrail.copy_map)"
    ).fetchone()
    return {"rows": graphs.read(conn), "counts": counts}


def refused(conn: graphs.Conn, query: str, params: tuple[Any, ...]) -> psycopg.Error:
    before = written(conn)
    with pytest.raises(psycopg.Error) as caught:
        conn.execute(query.encode(), params)
    assert written(conn) == before
    return caught.value


CLONE = "SELECT simtrail.clone_tenant(%s, %s)"


def test_clone_of_an_unknown_tenant_is_refused(conn: graphs.Conn) -> None:
    error = refused(conn, CLONE, (UNKNOWN, C))
    assert UNKNOWN in str(error)


def test_clone_into_a_tenant_with_rows_is_refused(conn: graphs.Conn) -> None:
    error = refused(conn, CLONE, (A, B))
    assert B in str(error)


def test_clone_into_a_tenant_whose_only_rows_are_notes_is_refused(conn: graphs.Conn) -> None:
    conn.execute("DELETE FROM public.g_root WHERE tenant_id = %s", (B,))
    assert graphs.of_tenant(graphs.read(conn), B)["public.g_note"]
    refused(conn, CLONE, (A, B))


def test_clone_with_a_unique_column_without_a_rule_is_refused(conn: graphs.Conn) -> None:
    conn.execute("DELETE FROM simtrail.copy_rules WHERE column_name = 'code'")
    error = refused(conn, CLONE, (A, C))
    assert "code" in str(error)


def test_copy_with_a_unique_column_without_a_rule_is_refused(conn: graphs.Conn) -> None:
    conn.execute("DELETE FROM simtrail.copy_rules WHERE column_name = 'code'")
    root = graphs.key_of("public.g_root", {"id": graphs.uid(1, 1)})
    error = refused(conn, "SELECT simtrail.copy_subtree('public.g_root', %s::jsonb, %s)", (root, C))
    assert "code" in str(error)


def test_a_dry_run_clone_writes_nothing(conn: graphs.Conn) -> None:
    before = written(conn)
    report = conn.execute("SELECT simtrail.clone_tenant(%s, %s, NULL, true)", (A, C)).fetchone()
    assert report is not None and report[0]
    assert written(conn) == before
