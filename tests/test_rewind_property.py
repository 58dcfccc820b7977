"""I1, I2 and I6 under random histories: rewinds to random marks are exact."""

from __future__ import annotations

import os

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import histories, rewindkit
from tests.conftest import Database

EXAMPLES = int(os.environ.get("SIMTRAIL_PROPERTY_EXAMPLES", "60"))

# Moving a patient to another class, or deleting a user that restored rows
# point at, makes a rewind refuse (tested on their own in test_rewind.py);
# here they would soon make every rewind refuse.
rewindable = histories.make_histories(frozenset({"move_patient", "delete_user"}))
# Segments of history, each followed by a mark in one of the tenants.
segments = st.lists(st.tuples(rewindable, st.integers(0, 2)), min_size=1, max_size=4)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=segments, choice=st.integers(0, 1000), after=rewindable)
def test_rewind_to_a_random_mark_is_exact_and_can_be_undone(
    seeded_db: Database,
    plan: list[tuple[list[tuple[list[histories.Op], bool]], int]],
    choice: int,
    after: list[tuple[list[histories.Op], bool]],
) -> None:
    db = seeded_db
    tenants = rewindkit.tenants(db)
    # Mark names are unique per example so earlier examples' marks don't match.
    run = db.sql("SELECT coalesce(max(id), 0) + 1 AS n FROM simtrail.marks")[0]["n"]
    recorded: list[tuple[str, str, rewindkit.State]] = []
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        for i, (history, who) in enumerate(plan):
            for ops, commit in history:
                histories.run_transaction(conn, ops, commit)
            tenant = tenants[who % len(tenants)]
            name = f"m{run}-{i}"
            rewindkit.mark(db, tenant, name)
            recorded.append((tenant, name, rewindkit.state(db, tenant)))
        for ops, commit in after:
            histories.run_transaction(conn, ops, commit)

    tenant, name, at_mark = recorded[choice % len(recorded)]
    before = rewindkit.all_states(db)
    rewindkit.mark(db, tenant, f"pre{run}")
    report = rewindkit.rewind(db, tenant, f"mark:{name}")
    assert report["mode"] == "replica"

    # I1: the tenant is exactly as it was at the mark …
    assert rewindkit.state(db, tenant) == at_mark
    # … I2: and every other tenant exactly as it was just before the rewind.
    after_rewind = rewindkit.all_states(db)
    for other, other_state in before.items():
        if other != tenant:
            assert after_rewind[other] == other_state, other

    # I6: the rewind is history too; rewinding to just before it undoes it.
    rewindkit.rewind(db, tenant, f"mark:pre{run}")
    assert rewindkit.state(db, tenant) == before[tenant]
