"""Clones and copies of the graph schema (tests/graphs.py) that refuse, and
write nothing: no row, no log entry, no copy record or key map, no mark, no
work rows left behind."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests import graphs
from tests.conftest import Database
from tests.fresh import copy_of
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


@pytest.fixture
def conn(graph_db: Database) -> Iterator[graphs.Conn]:
    with copy_of(graph_db) as db, psycopg.connect(db.dsn, autocommit=True) as connection:
        graphs.configure(connection, SMALL)
        graphs.load(connection, SMALL)
        yield connection


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
COPY = "SELECT simtrail.copy_subtree(%s, %s::jsonb, %s)"
# Unknown sources and targets, targets with rows in the tenant's own table, a
# unique column without a rule and dry runs are tested on the clinic fixture
# in test_clone.py; these are the graph schema's own cases.


def test_clone_into_a_tenant_whose_only_rows_are_notes_is_refused(conn: graphs.Conn) -> None:
    conn.execute("DELETE FROM public.g_root WHERE tenant_id = %s", (B,))
    assert graphs.of_tenant(graphs.read(conn), B)["public.g_note"]
    error = refused(conn, CLONE, (A, B))
    assert error.sqlstate == "55000" and "public.g_note" in str(error)


def test_clone_at_a_mark_refuses_a_parent_gone_since(conn: graphs.Conn) -> None:
    """The root named a user at the mark; the user is deleted since. The
    clone runs in replica mode, where foreign keys do not fire: it must
    check them itself."""
    conn.execute("SELECT simtrail.mark(%s, 'template')", (A,))
    conn.execute("DELETE FROM public.user_profiles WHERE id = %s", (graphs.USERS[0],))
    error = refused(conn, "SELECT simtrail.clone_tenant(%s, %s, 'mark:template')", (A, C))
    assert error.sqlstate == "23503" and "g_root_owner_id_fkey" in str(error)


def test_copy_with_a_unique_column_without_a_rule_is_refused(conn: graphs.Conn) -> None:
    conn.execute("DELETE FROM simtrail.copy_rules WHERE column_name = 'code'")
    root = graphs.key_of("public.g_root", {"id": graphs.uid(1, 1)})
    error = refused(conn, COPY, ("public.g_root", root, C))
    assert error.sqlstate == "55000" and "public.g_root.code is unique" in str(error)


def test_copy_of_a_key_made_of_references_to_rows_it_does_not_copy_is_refused(
    conn: graphs.Conn,
) -> None:
    """A link alone, into its own tenant: both halves of its key point at
    children that are not copied, so the copy would have the same key."""
    link = json.dumps({"a_id": graphs.uid(2, 0), "b_id": graphs.uid(2, 1)})
    error = refused(conn, COPY, ("public.g_link", link, A))
    assert error.sqlstate == "23505" and "g_link_pkey" in str(error)
    # No copy rule can help there: the hint says what can.
    assert "copy those rows with it, or copy into another class" in str(error)
    assert "set a copy rule" not in str(error)


def test_copy_of_a_row_that_is_not_there_is_refused(conn: graphs.Conn) -> None:
    error = refused(conn, COPY, ("public.g_root", json.dumps({"id": graphs.uid(1, 9)}), C))
    assert error.sqlstate == "P0002"


@pytest.mark.parametrize(
    "key",
    [
        {"id": graphs.uid(1, 1), "label": "x"},  # a field beyond the key is not a filter
        {"label": "x"},
        ["not", "an", "object"],
    ],
)
def test_copy_of_a_key_that_is_not_exactly_the_primary_key_is_refused(
    conn: graphs.Conn, key: Any
) -> None:
    error = refused(conn, COPY, ("public.g_root", json.dumps(key), C))
    assert error.sqlstate == "22023"
    assert "the key of public.g_root is a JSON object with exactly id" in str(error)
