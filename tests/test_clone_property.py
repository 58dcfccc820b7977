"""Clone and subtree copy on random tenant graphs (tests/graphs.py): each is a
bijection from the rows that should be copied to the rows that appeared,
under which every value and every reference maps; nothing else changes; and a
clone edited and reset to its launch mark is the clone again."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests import graph_edits, graphs
from tests.conftest import Database, Server
from tests.copycheck import (
    Copy,
    KeyMap,
    closure,
    kept_into,
    missing_parents,
    problems,
    reference_copy,
    report_problems,
    unchanged_keys,
)
from tests.fresh import copy_of, settle
from tests.graphs import A, B, C, D, Graph, Rows

EXAMPLES = int(os.environ.get("SIMTRAIL_CLONE_EXAMPLES", "25"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(autouse=True)
def _drops_settled() -> Iterator[None]:
    """Every copy dropped before the server fixture may stop its server."""
    yield
    settle()


@pytest.fixture
def graph_db(server: Server) -> Database:
    return graphs.template(server)


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


# The checker, against copies made by hand: a correct one passes, and each
# kind of mistake an engine could make is caught.

HAND_MADE = Graph(
    roots=[(0, 1, 0, 1), (0, 0, 3, 2), (1, None, 1, 3), (2, None, 2, 0)],
    children=[(0, 1, 3, False), (1, 0, 4, False), (0, 0, 5, False), (2, None, 6, False)],
    grands=[(0, 1), (1, 2), (3, 4)],
    links=[(0, 1, 7, False), (1, 0, 8, False), (2, 2, 9, False)],
    notes=[
        (0, (1, 0, 2, 1, 0), 0, False),
        (1, (0, 0, 0, 0, 0), 1, False),
        (0, (0, None, 0, None, None), 3, True),  # names B's root and child: kept
    ],
    declared=frozenset(graphs.DECLARABLE),
    code_rule=graphs.CODE_RULES[0],
)


def _swap(column: str, table: str) -> Callable[[Rows, KeyMap], None]:
    """Two new rows of the table swap their values of the column."""

    def mutate(after: Rows, keymap: KeyMap) -> None:
        new = [after[table][k] for k in sorted(keymap[table].values())]
        first, second = next((x, y) for x in new for y in new if x[column] != y[column])
        first[column], second[column] = second[column], first[column]

    return mutate


def _set(table: str, column: str, value: Any) -> Callable[[Rows, KeyMap], None]:
    def mutate(after: Rows, keymap: KeyMap) -> None:
        after[table][keymap[table][sorted(keymap[table])[0]]][column] = value

    return mutate


def _source_ref(after: Rows, keymap: KeyMap) -> None:
    """A copied note's text reference left pointing at the source's root."""
    note = next(
        after["public.g_note"][new]
        for old, new in keymap["public.g_note"].items()
        if json.loads(old)["id"] == graphs.uid(5, 0)
    )
    note["about"] = graphs.uid(1, 1)


def _drop_one(after: Rows, keymap: KeyMap) -> None:
    old, new = sorted(keymap["public.g_grand"].items())[0]
    del after["public.g_grand"][new], keymap["public.g_grand"][old]


def _not_injective(after: Rows, keymap: KeyMap) -> None:
    olds = sorted(keymap["public.g_child"])
    keymap["public.g_child"][olds[0]] = keymap["public.g_child"][olds[1]]


def _touch_source(after: Rows, keymap: KeyMap) -> None:
    after["public.g_root"][json.dumps({"id": graphs.uid(1, 2)})]["label"] = "touched"


def _extra_row(after: Rows, keymap: KeyMap) -> None:
    row = dict(next(iter(after["public.g_note"].values())), id=graphs.uid(9, 9))
    after["public.g_note"][graphs.key_of("public.g_note", row)] = row


MISTAKES: dict[str, Callable[[Rows, KeyMap], None]] = {
    "swapped parents": _swap("root_id", "public.g_child"),
    "swapped self-references": _swap("prev_id", "public.g_child"),
    "swapped composite-key halves": _swap("b_id", "public.g_link"),
    "swapped text references": _swap("about_grand", "public.g_note"),
    "a text reference into the source": _source_ref,
    "a value changed": _set("public.g_child", "val", -1),
    "an outside reference not kept": _set("public.g_root", "owner_id", None),
    "the tenant column not set": _set("public.g_root", "tenant_id", B),
    "a rule not applied": _set("public.g_root", "printed", True),
    "a generated value kept": _set("public.g_root", "code", "code-0"),
    "a reference to the ruled column not remapped": _set("public.g_note", "about_code", "code-0"),
    "a default rule not applied": _set("public.g_root", "status", "done"),
    "a row missing": _drop_one,
    "two rows mapped to one": _not_injective,
    "a source row changed": _touch_source,
    "a row no map covers": _extra_row,
}


def _hand_made(graph_db: Database) -> tuple[Rows, Copy]:
    with copy_of(graph_db) as db, psycopg.connect(db.dsn, autocommit=True) as conn:
        graphs.configure(conn, HAND_MADE)
        graphs.load(conn, HAND_MADE)
        before = graphs.read(conn)
    return before, Copy(graphs.of_tenant(before, A), C, HAND_MADE.refs, HAND_MADE.rules)


def test_the_checker_accepts_a_correct_copy_and_catches_each_mistake(graph_db: Database) -> None:
    before, copy = _hand_made(graph_db)
    assert all(copy.source[t] for t in graphs.TABLES), "every table has rows to copy"
    after, keys = reference_copy(before, copy)
    assert problems(before, after, keys, copy) == []
    for name, mutate in MISTAKES.items():
        wrong, wrong_keys = reference_copy(before, copy)
        mutate(wrong, wrong_keys)
        assert problems(before, wrong, wrong_keys, copy), name


def test_the_checker_follows_references_into_a_subtree(graph_db: Database) -> None:
    before, copy = _hand_made(graph_db)
    root = json.dumps({"id": graphs.uid(1, 1)})
    subtree = closure(before, HAND_MADE.refs, "public.g_root", root, set(graphs.TABLES))
    # Root 1's children, their grandchildren and links, the note that names
    # it; and root 0, whose parent_id points at root 1, with all of its own.
    assert {t: len(r) for t, r in subtree.items()} == {
        "public.g_root": 2, "public.g_child": 3, "public.g_grand": 2,
        "public.g_link": 3, "public.g_note": 1,
    }  # fmt: skip
    into = Copy(subtree, B, copy.refs, copy.rules)
    after, keys = reference_copy(before, into)
    assert problems(before, after, keys, into) == []
    _swap("prev_id", "public.g_child")(after, keys)
    assert problems(before, after, keys, into)


# The engine.


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
