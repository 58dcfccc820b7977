"""I12 under random histories with compaction and retention between exports:
every incremental export verifies against the one before, and together they
hold exactly the sealed history (each original once, as the database had it),
less only what retention dropped before any export saw it, which the next
export declares through its prune record."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simtrail import canonical
from simtrail.db import connect
from simtrail.export import verify, writer
from tests import exportkit as ek
from tests import histories
from tests.conftest import Database
from tests.fresh import copy_of, settle

EXAMPLES = int(os.environ.get("SIMTRAIL_EXPORT_EXAMPLES", "15"))

steps = st.lists(
    st.tuples(histories.make_histories(), st.sampled_from(["none", "compact", "retain", "both"])),
    min_size=1, max_size=3,
)

TRUTH = """
SELECT s.tenant_id, s.seq, s.change_id, encode(s.hash, 'hex') AS hash,
       coalesce(a.table_name, c.table_name) AS table_name,
       coalesce(a.operation, c.operation) AS operation,
       CASE WHEN a.id IS NULL THEN c.new_data ELSE a.new_data END AS new_data,
       CASE WHEN a.id IS NULL THEN c.old_data ELSE a.old_data END AS old_data
FROM simtrail.seals AS s
LEFT JOIN simtrail.archive AS a ON a.id = s.change_id
LEFT JOIN simtrail.changes AS c ON c.id = s.change_id AND c.net_count IS NULL
"""


@pytest.fixture(autouse=True)
def _drops_settled() -> Iterator[None]:
    yield
    settle()


def _export(db: Database, out: Path, after: Path | None) -> None:
    def opener(purpose: str, autocommit: bool) -> Any:
        return connect(db.dsn, purpose, autocommit=autocommit)

    writer.export(opener, out, writer.Filters(), after=after)


def _truth(db: Database, into: dict[tuple[str | None, int], dict[str, Any]]) -> None:
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        psycopg.types.json.set_json_loads(canonical.loads, conn)
        for row in conn.execute(TRUTH.encode()).fetchall():
            into.setdefault((row[0], row[1]), {
                "change_id": row[2], "hash": row[3], "table_name": row[4],
                "operation": row[5], "new_data": row[6], "old_data": row[7]})


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(plan=steps)
def test_incremental_exports_are_the_history(
    seeded_db: Database, tmp_path_factory: pytest.TempPathFactory,
    plan: list[tuple[list[tuple[list[histories.Op], bool]], str]],
) -> None:
    tmp = tmp_path_factory.mktemp("exports")
    with copy_of(seeded_db) as db:
        # The seeded history happened 40 days ago, so retention has
        # something to drop (it is unsealed yet: nothing hashed changes).
        db.sql("UPDATE simtrail.changes SET changed_at = changed_at - interval '40 days'")
        truth: dict[tuple[str | None, int], dict[str, Any]] = {}
        exports: list[Path] = []
        for number, (history, action) in enumerate(plan):
            with psycopg.connect(db.dsn, autocommit=True) as conn:
                for ops, commit in history:
                    histories.run_transaction(conn, ops, commit)
            ek.seal(db)
            if action in ("compact", "both"):
                db.sql("SELECT simtrail.tick(interval '1 second')")
                while not db.sql("SELECT simtrail.compact_batch('0', 500) AS r")[0]["r"]["done"]:
                    pass
            # After compaction, which seals too (a transaction that was still
            # running at the first seal may have ended since).
            _truth(db, truth)
            if action in ("retain", "both"):
                db.sql("SELECT simtrail.apply_retention(30)")
            out = tmp / str(number)
            _export(db, out, exports[-1] if exports else None)
            verify.verify(out, after=exports[-1] if exports else None)
            exports.append(out)

        seen: dict[tuple[str | None, int], dict[str, Any]] = {}
        pruned: set[tuple[str | None, int]] = set()
        for out in exports:
            for line in ek.lines(out):
                obj = canonical.loads(line)
                key = (obj["tenant_id"], obj["seq"])
                assert key not in seen, f"{key} exported twice"
                seen[key] = obj
            for chain in ek.manifest(out)["chains"]:
                if "pruned" in chain:
                    p = chain["pruned"]
                    pruned |= {(chain["tenant_id"], s)
                               for s in range(p["first_seq"], p["last_seq"] + 1)}
        assert set(seen) | pruned == set(truth)
        assert not set(seen) & pruned
        for key, obj in seen.items():
            want = truth[key]
            assert obj["hash"] == want["hash"] and obj["id"] == want["change_id"], key
            assert (obj["table_name"], obj["operation"]) == (want["table_name"], want["operation"])
            assert obj["new_data"] == want["new_data"] and obj["old_data"] == want["old_data"]
