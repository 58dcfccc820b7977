"""I5 under random histories: the log replays to exactly the live tables."""

from __future__ import annotations

import os

import psycopg
from hypothesis import HealthCheck, given, settings

from tests import histories, logcheck
from tests.conftest import Database

EXAMPLES = int(os.environ.get("SIMTRAIL_CAPTURE_EXAMPLES", "60"))


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=histories.histories)
def test_log_replays_to_the_live_state(
    seeded_db: Database, history: list[tuple[list[histories.Op], bool]]
) -> None:
    # One database for all examples: each history adds to what came before,
    # so later examples run on top of cascades and moves of earlier ones.
    with psycopg.connect(seeded_db.dsn, autocommit=True) as conn:
        for ops, commit in history:
            histories.run_transaction(conn, ops, commit)
    replayed = logcheck.replay(seeded_db)
    assert replayed.problems == []
    live = logcheck.live_state(seeded_db)
    for table, rows in live.items():
        assert replayed.state.get(table, {}) == rows, table
