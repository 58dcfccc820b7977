"""The copy checker (tests/copycheck.py) against copies made by hand: a
correct one passes, and each kind of mistake an engine could make is caught,
so a passing clone or copy property test means something."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import psycopg

from tests import graphs
from tests.conftest import Database
from tests.copycheck import Copy, KeyMap, closure, problems, reference_copy
from tests.fresh import copy_of
from tests.graphs import A, B, C, Graph, Rows

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
