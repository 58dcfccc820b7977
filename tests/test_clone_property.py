"""Clone and subtree copy on random tenant graphs (tests/graphs.py): each is a
bijection from the rows that should be copied to the rows that appeared,
under which every value and every reference maps; nothing else changes; and a
clone edited and reset to its launch mark is the clone again."""

from __future__ import annotations

import json
import os
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests import graph_edits, graphs
from tests.conftest import Database
from tests.copycheck import (
    Copy,
    KeyMap,
    closure,
    kept_into,
    missing_parents,
    problems,
    report_problems,
    unchanged_keys,
)
from tests.fresh import copy_of
from tests.graphs import A, B, C, D, Graph

EXAMPLES = int(os.environ.get("SIMTRAIL_CLONE_EXAMPLES", "25"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def keymap(conn: graphs.Conn, copy_id: int) -> KeyMap:
    out: KeyMap = {t: {} for t in graphs.TABLES}
    for table, old, new in conn.execute(
        "SELECT table_name, old_key, new_key FROM simtrail.copy_keys WHERE copy_id = %s",
        (copy_id,),
    ):
        out.setdefault(table, {})[json.dumps(old, sort_keys=True)] = json.dumps(new, sort_keys=True)
    return out


def newest_copy_or_zero(conn: graphs.Conn) -> int:
    row = conn.execute("SELECT coalesce(max(id), 0) FROM simtrail.copies").fetchone()
    assert row is not None
    return int(row[0])


def log_size(conn: graphs.Conn) -> int:
    row = conn.execute("SELECT count(*) FROM simtrail.changes").fetchone()
    assert row is not None
    return int(row[0])


def _bucket(n: int) -> str:
    return "0" if n == 0 else "1-4" if n < 5 else "5-14" if n < 15 else "15+"


def clone(conn: graphs.Conn, source: str, to: str, at: str | None) -> dict[str, Any]:
    row = conn.execute("SELECT simtrail.clone_tenant(%s, %s, %s)", (source, to, at)).fetchone()
    assert row is not None
    report: dict[str, Any] = row[0]
    return report


@SETTINGS
@given(
    graph=graphs.graphs,
    source_edits=graph_edits.edits,
    clone_edits=graph_edits.edits,
    at_mark=st.booleans(),
    other_edits=graph_edits.edits,
    drop_user=st.integers(0, 3).map(lambda n: n == 3),
    target_history=st.booleans(),
)
def test_clone_maps_every_row_and_reference_and_reset_gives_it_back(
    graph_db: Database,
    graph: Graph,
    source_edits: list[graph_edits.Edit],
    clone_edits: list[graph_edits.Edit],
    at_mark: bool,
    other_edits: list[graph_edits.Edit],
    drop_user: bool,
    target_history: bool,
) -> None:
    with copy_of(graph_db) as db, psycopg.connect(db.dsn, autocommit=True) as conn:
        graphs.configure(conn, graph)
        graphs.load(conn, graph)
        # Cloned as the source is now, or as it was at a mark taken before
        # the edits (the state then comes from the log). Rows outside the
        # copy that it pointed at then may be gone since.
        at = None
        if at_mark:
            conn.execute("SELECT simtrail.mark(%s, 'template')", (A,))
            at = "mark:template"
        source = graphs.of_tenant(graphs.read(conn), A)
        graph_edits.apply(conn, A, source_edits)
        graph_edits.apply(conn, B, other_edits)
        if drop_user:
            conn.execute("DELETE FROM public.user_profiles WHERE id = %s", (graphs.USERS[0],))
        if target_history:  # the target had rows once: the reset must not bring them back
            graph_edits.apply(
                conn, C, [("add_root", 0, 0), ("add_child", 0, 0), ("add_note", 0, 0)]
            )
            conn.execute("DELETE FROM public.g_root WHERE tenant_id = %s", (C,))
            conn.execute("DELETE FROM public.g_note WHERE tenant_id = %s", (C,))
        before = graphs.read(conn)
        if not at_mark:
            source = graphs.of_tenant(before, A)

        copy = Copy(source, C, graph.refs, graph.rules)
        if missing_parents(copy, before, graphs.FKS + graphs.USER_FKS):
            event("refusal expected: a missing parent")
            log = log_size(conn)
            with pytest.raises(psycopg.errors.ForeignKeyViolation):
                clone(conn, A, C, at)
            assert graphs.read(conn) == before and log_size(conn) == log
            return
        report = clone(conn, A, C, at)
        after = graphs.read(conn)
        event(f"rows copied: {_bucket(sum(map(len, source.values())))}")
        assert problems(before, after, keymap(conn, report["copy_id"]), copy) == []
        assert report_problems(report, copy) == []

        # Students edit the clone; a reset gives the clone back exactly, and
        # touches nothing else.
        launched = graphs.of_tenant(after, C)
        graph_edits.apply(conn, C, clone_edits)
        edited = graphs.read(conn)
        conn.execute("SELECT simtrail.rewind(%s, 'mark:launch', false, false)", (C,))
        reset = graphs.read(conn)
        assert graphs.of_tenant(reset, C) == launched
        assert graphs.outside(reset, C) == graphs.outside(edited, C)


CATEGORIES = {
    "public.g_root": "core", "public.g_child": "parts", "public.g_grand": "parts",
    "public.g_link": "links", "public.g_note": "notes",
}  # fmt: skip


@SETTINGS
@given(
    graph=graphs.graphs,
    table=st.sampled_from(graphs.TABLES),
    which=st.integers(0, 40),
    to=st.sampled_from([B, D, A]),
    skip=st.frozensets(st.sampled_from(sorted(set(CATEGORIES.values())))),
    dry_run=st.booleans(),
)
def test_copy_subtree_maps_the_row_and_everything_that_references_it(
    graph_db: Database,
    graph: Graph,
    table: str,
    which: int,
    to: str,
    skip: frozenset[str],
    dry_run: bool,
) -> None:
    with copy_of(graph_db) as db, psycopg.connect(db.dsn, autocommit=True) as conn:
        graphs.configure(conn, graph)
        graphs.load(conn, graph)
        before = graphs.read(conn)
        keys = sorted(graphs.of_tenant(before, A)[table])
        if not keys:
            return
        key = keys[which % len(keys)]
        # Skipped categories are not followed; the row's own table always is.
        tables = {t for t, c in CATEGORIES.items() if c not in skip} | {table}
        subtree = closure(before, graph.refs, table, key, tables)
        # A copy into another tenant may not keep a reference into the
        # source; a copy whose key is made of references to rows it does not
        # copy would duplicate the key.
        refuse = (to != A and bool(kept_into(before, subtree, graph.refs, A))) or bool(
            unchanged_keys(subtree, graph.refs)
        )
        rows = sum(map(len, subtree.values()))
        event("refusal expected" if refuse else f"rows copied: {_bucket(rows)}")
        log, copies = log_size(conn), newest_copy_or_zero(conn)
        options = json.dumps({"skip": sorted(skip), "dry_run": dry_run})
        try:
            row = conn.execute(
                "SELECT simtrail.copy_subtree(%s, %s::jsonb, %s, %s)", (table, key, to, options)
            ).fetchone()
        except psycopg.Error as exc:
            assert refuse, exc
            assert exc.sqlstate in ("23503", "23505"), exc
            assert graphs.read(conn) == before
            assert (log_size(conn), newest_copy_or_zero(conn)) == (log, copies)
            return
        assert not refuse, "the copy should have refused"
        assert row is not None
        report = row[0]
        copy = Copy(subtree, to, graph.refs, graph.rules)
        assert report_problems(report, copy) == []
        if dry_run:
            assert report["copy_id"] is None
            assert graphs.read(conn) == before
            assert (log_size(conn), newest_copy_or_zero(conn)) == (log, copies)
            return
        after = graphs.read(conn)
        assert problems(before, after, keymap(conn, report["copy_id"]), copy) == []
        assert report["new_key"] == json.loads(keymap(conn, report["copy_id"])[table][key])
