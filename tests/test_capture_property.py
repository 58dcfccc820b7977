"""I5 under random histories: the log replays to exactly the live tables, and
each tenant's log alone replays to exactly that tenant's live rows."""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings

from tests import histories, logcheck, rewindkit
from tests.conftest import Database
from tests.fresh import copy_of, settle

EXAMPLES = int(os.environ.get("SIMTRAIL_CAPTURE_EXAMPLES", "60"))


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
@given(history=histories.histories)
# A patient of no class joins one and leaves for another, children and all,
# and its children change after it left for no class in the same transaction.
@example(
    history=[
        ([("add_loose_patient", 0, 0)], True),
        ([("assign_patient", 0, 0), ("move_patient", 0, 1)], True),
    ]
)
@example(history=[([("unassign_patient", 0, 0), ("edit_children", 0, 1)], True)])
def test_log_replays_to_the_live_state(
    seeded_db: Database, history: list[tuple[list[histories.Op], bool]]
) -> None:
    with copy_of(seeded_db) as db:
        with psycopg.connect(db.dsn, autocommit=True) as conn:
            for ops, commit in history:
                histories.run_transaction(conn, ops, commit)
        replayed = logcheck.replay(db)
        assert replayed.problems == []
        live = logcheck.live_state(db)
        for table, rows in live.items():
            assert replayed.state.get(table, {}) == rows, table
        # A move logged as a plain change under the new tenant passes the
        # check above; the old tenant's own log then still holds the row.
        live_by_tenant = logcheck.live_tenant_states(db)
        for tenant in rewindkit.tenants(db):
            mine = logcheck.replay_tenant(db, tenant)
            for table, rows in mine.items():
                assert live_by_tenant.get(tenant, {}).get(table, {}) == rows, (tenant, table)
