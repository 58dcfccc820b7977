"""I1, I2 and I6 under random histories: rewinds to random marks and times are
exact and can be undone, with patients moving between classes and to and from
no class at all."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests import histories, logcheck, rewindkit
from tests.conftest import Database
from tests.fresh import copy_of, settle

EXAMPLES = int(os.environ.get("SIMTRAIL_PROPERTY_EXAMPLES", "60"))

History = list[tuple[list[histories.Op], bool]]
# Deleting a user that restored rows point at makes a rewind refuse (tested
# on its own in test_rewind.py); here it would soon make every rewind refuse.
# Moves between classes refuse too, unless forced, so they are drawn rarely;
# moves to and from no class never refuse and are drawn as often as the rest.
rewindable = histories.make_histories(
    frozenset({"delete_user"}), rare=frozenset({"truncate_results", "move_patient"})
)
# Segments of history, each followed by a cut: a mark of a tenant, or a tick
# (as the daemon records them) that a time just after it resolves to. The
# integer picks the tenant: that of the patient at that position, if any.
Cut = str
segments = st.lists(
    st.tuples(rewindable, st.integers(0, 40), st.sampled_from(["mark", "tick"])),
    min_size=1,
    max_size=4,
)
# The refusals a history with moves between classes may earn (SQLSTATE and a
# phrase of the message); any other error fails the test.
LEFT = "left tenant"
ENTERED = "entered tenant"
# Rows added to a patient while it had no class would come back with it.
DRAGGED = "come back, and would bring"


def cut_tenant(conn: psycopg.Connection[Any], who: int) -> str:
    row = conn.execute(
        "SELECT tenant_id FROM public.patients WHERE id = %s", (histories.patient(conn, who),)
    ).fetchone()
    return str(row[0] if row and row[0] else histories.tenant(conn, who))


def take_cut(db: Database, conn: psycopg.Connection[Any], tenant: str, kind: Cut, i: int) -> str:
    if kind == "mark":
        rewindkit.mark(db, tenant, f"m{i}")
        return f"mark:m{i}"
    conn.execute("SELECT simtrail.tick()")
    # Just after the tick and before the next change: the time resolves to
    # the tick, whether by "the last cut before" or "a cut within a tick
    # interval".
    at = conn.execute("SELECT clock_timestamp()").fetchone()
    assert at is not None
    time.sleep(0.002)
    return str(at[0].isoformat())


def refusal(exc: psycopg.Error) -> str | None:
    message = str(exc)
    if exc.sqlstate == "55000":
        for phrase in (DRAGGED, LEFT, ENTERED):
            if phrase in message:
                return phrase
    return None


@pytest.fixture(autouse=True)
def _drops_settled() -> Iterator[None]:
    """Every copy dropped before the server fixture may stop its server."""
    yield
    settle()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=segments, choice=st.integers(0, 1000), after=rewindable)
# First versus last image: a row updated twice after the cut, in one
# transaction and in two, or updated and then deleted.
@example(
    plan=[([], 0, "mark")],
    choice=0,
    after=[([("update_patient", 0, 1), ("update_patient", 0, 2)], True)],
)
@example(
    plan=[([], 0, "tick")],
    choice=0,
    after=[([("update_patient", 0, 1)], True), ([("update_patient", 0, 2)], True)],
)
@example(
    plan=[([], 0, "mark")],
    choice=0,
    after=[([("update_patient", 0, 1), ("delete_patient", 0, 0)], True)],
)
@example(
    plan=[([], 0, "tick")],
    choice=0,
    after=[([("update_patient", 0, 1)], True), ([("delete_patient", 0, 0)], True)],
)
# A patient of no class joins the class after the cut, children and all,
# and leaves it again; and one that left for no class after the cut.
@example(
    plan=[([([("add_loose_patient", 0, 0)], True)], 0, "mark")],
    choice=0,
    after=[([("assign_patient", 0, 0), ("add_handover", 0, 1)], True)],
)
@example(
    plan=[([([("add_loose_patient", 0, 0)], True)], 0, "tick")],
    choice=0,
    after=[([("assign_patient", 0, 0)], True), ([("unassign_patient", 0, 0)], True)],
)
# A wound added after the cut leaves for no class with its patient, who was
# the tenant's at the cut: the patient comes back, the wound must not.
@example(
    plan=[([], 0, "mark")],
    choice=0,
    after=[([("add_wound", 0, 1)], True), ([("unassign_patient", 0, 0)], True)],
)
# After the cut: a link of an order moves to another order (a key of two
# references changes), a drug is given (label, scan) and one stopped (its
# links cascade, its scans stay), and a wound is treated.
@example(
    plan=[([], 0, "mark")],
    choice=0,
    after=[
        ([("order_links", 0, 1), ("medications", 0, 1), ("treat_wound", 0, 0)], True),
        ([("medications", 1, 2)], True),
    ],
)
def test_rewind_to_a_random_cut_is_exact_and_can_be_undone(
    seeded_db: Database,
    plan: list[tuple[History, int, Cut]],
    choice: int,
    after: History,
) -> None:
    with copy_of(seeded_db) as db:
        check(db, plan, choice, after)


def check(db: Database, plan: list[tuple[History, int, Cut]], choice: int, after: History) -> None:
    recorded: list[tuple[str, str, rewindkit.State, logcheck.TenantStates]] = []
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        for i, (history, who, kind) in enumerate(plan):
            for ops, commit in history:
                histories.run_transaction(conn, ops, commit)
            tenant = cut_tenant(conn, who)
            at_cut = rewindkit.state(db, tenant)
            rows_at_cut = logcheck.live_tenant_states(db)
            recorded.append((tenant, take_cut(db, conn, tenant, kind, i), at_cut, rows_at_cut))
        for ops, commit in after:
            histories.run_transaction(conn, ops, commit)
    drawn = {
        kind
        for history in [*(h for h, _, _ in plan), after]
        for ops, _ in history
        for kind, _, _ in ops
    }
    # A move between classes, directly or through no class.
    between = "move_patient" in drawn or {"assign_patient", "unassign_patient"} <= drawn

    tenant, target, at_cut, rows_at_cut = recorded[choice % len(recorded)]
    before = rewindkit.all_states(db)
    rows_before = logcheck.live_tenant_states(db)
    log = rewindkit.log_size(db)
    rewindkit.mark(db, tenant, "pre")
    forced = False
    try:
        report = rewindkit.rewind(db, tenant, target)
    except psycopg.Error as exc:
        # Only moves may be refused, and a refusal changes nothing. Rows of
        # the tenant may point at a patient of no class (one that left while
        # its vitals, which carry their own tenant, stayed); once that
        # patient is deleted, they cannot be restored.
        why = refusal(exc) or ("missing parent" if exc.sqlstate == "23503" else None)
        assert why is not None, exc
        assert between or (why != ENTERED and "unassign_patient" in drawn), exc
        assert rewindkit.all_states(db) == before and rewindkit.log_size(db) == log
        if why != ENTERED:
            return
        # Forced, the rows that came from another class are deleted here, and
        # that class is not touched: unless its rows point at them, which
        # refuses too.
        try:
            report = rewindkit.rewind(db, tenant, target, force=True)
        except psycopg.Error as again:
            assert again.sqlstate == "23503" or refusal(again) in (LEFT, DRAGGED), again
            assert rewindkit.all_states(db) == before
            return
        forced = True
        assert report["moved_in"]["deleted"] > 0
    assert report["mode"] == "replica"

    # I1: the tenant is exactly as it was at the cut …
    assert rewindkit.state(db, tenant) == at_cut
    # … I2: and every other tenant exactly as it was just before the rewind.
    after_rewind = rewindkit.all_states(db)
    for other, other_state in before.items():
        if other != tenant:
            assert after_rewind[other] == other_state, other

    # Rows of no tenant are no tenant's to rewind: those the tenant's history
    # never held stay exactly as they were …
    rows_after = logcheck.live_tenant_states(db)
    empty: dict[str, dict[str, Any]] = {}
    ours = {
        (r["table_name"], logcheck.canon(r["row_pk"]))
        for r in db.sql(
            "SELECT table_name, row_pk FROM simtrail.changes WHERE tenant_id = %s"
            " UNION SELECT table_name, old_pk FROM simtrail.changes"
            " WHERE tenant_id = %s AND old_pk IS NOT NULL",
            (tenant, tenant),
        )
    }
    for table, rows in rows_before.get(None, {}).items():
        for key, image in rows.items():
            if (table, key) not in ours:
                assert rows_after.get(None, {}).get(table, empty).get(key) == image, (table, key)
    # … and those that entered the tenant from no tenant since go back to no
    # tenant rather than being deleted.
    if not forced:
        for table, rows in rows_at_cut.get(None, {}).items():
            for key in rows.keys() & rows_before.get(tenant, {}).get(table, empty).keys():
                assert key in rows_after.get(None, {}).get(table, empty), (table, key)

    # I6: the rewind is history too; rewinding to just before it undoes it.
    rewindkit.rewind(db, tenant, "mark:pre")
    assert rewindkit.state(db, tenant) == before[tenant]
