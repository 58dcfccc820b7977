"""Generated SQL never confuses its own names with a user's columns (I5, I1)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import logcheck, rewindkit
from tests.conftest import Database

# Every alias, output name and variable the generated capture, rewind and
# tenant_state SQL use, as column names; plus case, spaces and quotes. The
# child reaches its tenant through a column named p1, the parents' alias.
NAMES = [
    "r", "x", "rec", "rn", "c", "k", "n", "p1", "p2", "tenant", "img", "pk", "keyed", "key",
    "code", "j", "w", "g", "e", "s", "m", "o", "t", "l", "f", "k2", "v_xid", "v_moved",
    "__xid__", "rows", "Mixed Case", "sp ace", 'quo"te', "it's",
]  # fmt: skip


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def columns(skip: set[str]) -> str:
    return ", ".join(f"{ident(n)} text" for n in NAMES if n not in skip)


SCHEMA = f"""
CREATE SCHEMA hostile;
CREATE TABLE hostile."Parent Table" (
    "key" integer PRIMARY KEY,
    tenant_id uuid REFERENCES public.tenants (id) ON DELETE SET NULL,
    {columns({"key"})}
);
CREATE TABLE hostile.child (
    "rec" integer,
    "x" integer,
    "p1" integer NOT NULL REFERENCES hostile."Parent Table" ("key") ON DELETE CASCADE,
    {columns({"rec", "x", "p1"})},
    PRIMARY KEY ("rec", "x")
);
INSERT INTO public.simulation_table_config
    (table_name, category, has_tenant_id, has_patient_id, parent_table, parent_column,
     requires_id_mapping, delete_order, enabled)
VALUES ('hostile."Parent Table"', 'test', true, false, NULL, NULL, false, 2, true),
       ('hostile.child', 'test', false, false, 'hostile."Parent Table"', 'p1', false, 1, true);
SELECT simtrail.sync(true);
"""


@pytest.fixture
def hostile_db(seeded_db: Database) -> Iterator[Database]:
    seeded_db.sql(SCHEMA)
    yield seeded_db


def test_capture_rewind_and_tenant_state_with_hostile_column_names(hostile_db: Database) -> None:
    db = hostile_db
    first, second = rewindkit.tenants(db)[:2]
    parent_cols = ", ".join(ident(n) for n in NAMES if n != "key")
    child_cols = ", ".join(ident(n) for n in NAMES if n not in {"rec", "x", "p1"})
    n_parent, n_child = len(NAMES) - 1, len(NAMES) - 3

    def parent(key: int, tenant: str) -> None:
        values = ", ".join(f"'p{key} {i}'" for i in range(n_parent))
        db.sql(
            f'INSERT INTO hostile."Parent Table" ("key", tenant_id, {parent_cols})'
            f" VALUES (%s, %s, {values})",
            (key, tenant),
        )

    def child(rec: int, x: int, p1: int) -> None:
        values = ", ".join(f"'c{rec} {i}'" for i in range(n_child))
        db.sql(
            f'INSERT INTO hostile.child ("rec", "x", "p1", {child_cols})'
            f" VALUES (%s, %s, %s, {values})",
            (rec, x, p1),
        )

    parent(1, first)
    parent(2, first)
    parent(3, second)
    child(1, 1, 1)
    child(1, 2, 2)
    child(2, 1, 3)
    rewindkit.mark(db, first, "m")
    rewindkit.mark(db, second, "m")
    before = rewindkit.all_states(db)
    assert before[first]['hostile."Parent Table"'][0] == 2
    assert before[first]["hostile.child"][0] == 2

    # Every kind of write, including a primary-key change, a tenant move that
    # drags a child along, a cascade and a truncate.
    db.sql('UPDATE hostile.child SET "r" = \'changed\', "Mixed Case" = NULL WHERE "rec" = 1')
    db.sql('UPDATE hostile.child SET "x" = 9 WHERE "rec" = 1 AND "x" = 2')
    db.sql('UPDATE hostile."Parent Table" SET tenant_id = %s WHERE "key" = 2', (second,))
    db.sql('UPDATE hostile."Parent Table" SET "quo""te" = \'q\', "it\'s" = \'i\'')
    db.sql('DELETE FROM hostile."Parent Table" WHERE "key" = 1')
    parent(4, first)
    child(5, 5, 4)
    db.sql("TRUNCATE hostile.child")
    child(6, 6, 4)

    logged = db.sql(
        "SELECT table_name, operation, tenant_id, moved FROM simtrail.changes"
        " WHERE table_name LIKE 'hostile.%%' ORDER BY id"
    )
    assert {(c["table_name"], c["operation"]) for c in logged} == {
        ('hostile."Parent Table"', "INSERT"),
        ('hostile."Parent Table"', "UPDATE"),
        ('hostile."Parent Table"', "DELETE"),
        ("hostile.child", "INSERT"),
        ("hostile.child", "UPDATE"),
        ("hostile.child", "DELETE"),
        ("hostile.child", "TRUNCATE"),
    }
    assert all(c["tenant_id"] in (first, second) for c in logged)
    assert {c["moved"] for c in logged if c["table_name"] == "hostile.child"} >= {"in", "out"}
    replayed = logcheck.replay(db)
    assert replayed.problems == []
    live = logcheck.live_state(db)
    for table in ('hostile."Parent Table"', "hostile.child"):
        assert replayed.state[table] == live[table]

    # The second tenant gained a parent and a child from the first; put it
    # back first (forced: the rows came from another tenant), then the first.
    rewindkit.rewind(db, second, "mark:m", force=True)
    rewindkit.rewind(db, first, "mark:m", force=True)
    assert rewindkit.all_states(db) == before
