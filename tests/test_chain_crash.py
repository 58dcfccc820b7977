"""kill -9 during a seal loses nothing and seals nothing twice."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time

import pytest

from tests.chainkit import chains, originals, seal, verify
from tests.conftest import Database


@pytest.mark.slow
def test_kill_9_during_seals_loses_nothing_and_seals_nothing_twice(seeded_db: Database) -> None:
    db = seeded_db
    # A backlog of some thousands of changes in a few transactions.
    for _ in range(5):
        db.sql(
            "DO $$ BEGIN FOR i IN 1..300 LOOP"
            " UPDATE public.patients SET room_number = 'r' || i; END LOOP; END $$"
        )
    total = originals(db)
    assert total > 10_000
    rng = random.Random(11)
    killed = 0
    for _ in range(6):
        seal_run = subprocess.Popen(
            [sys.executable, "-m", "simtrail.cli.main", "--dsn", db.dsn, "seal", "--batch", "100"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.4, 1.5))
        if seal_run.poll() is None:
            seal_run.send_signal(signal.SIGKILL)
            killed += 1
        seal_run.wait(timeout=30)
        # The killed client's backend rolls its batch back; wait until it is gone.
        deadline = time.monotonic() + 30
        while db.sql(
            "SELECT count(*) AS n FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = 'simtrail seal'"
        )[0]["n"] and time.monotonic() < deadline:
            time.sleep(0.1)
    assert killed >= 3, "the seal finished before it could be killed; make the backlog larger"
    partial = db.sql("SELECT count(*) AS n FROM simtrail.seals")[0]["n"]
    assert 0 < partial <= total
    # Every batch that committed left a consistent chain: it verifies now.
    assert verify(db)[0] == 0
    seal(db)
    assert db.sql("SELECT count(*) AS n FROM simtrail.seals")[0]["n"] == total
    for tenant, links in chains(db).items():
        assert [seq for seq, _ in links] == list(range(1, len(links) + 1)), tenant
    # Checkpoints only ever move heads forward.
    seen: dict[str | None, int] = {}
    for record in db.sql("SELECT body FROM simtrail.chain_records ORDER BY id"):
        for head in record["body"]["heads"]:
            assert head["seq"] >= seen.get(head["tenant_id"], 0)
            seen[head["tenant_id"]] = head["seq"]
    code, report = verify(db)
    assert code == 0, report
    assert report["seals"] == total
