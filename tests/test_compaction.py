"""Ticks, compaction, archive and retention: each behaviour with its values."""

from __future__ import annotations

import re
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from tests import rewindkit
from tests.conftest import Database
from tests.rewindkit import mark, rewind, state


def tick(db: Database) -> datetime:
    at: datetime = db.sql(
        "SELECT (simtrail.tick(interval '1 second') ->> 'at')::timestamptz AS at"
    )[0]["at"]
    return at


def clock(db: Database) -> datetime:
    now: datetime = db.sql("SELECT clock_timestamp() AS now")[0]["now"]
    return now


def compact(db: Database, batch: int = 10_000) -> dict[str, int]:
    """Every batch up to the newest tick; the summed counts."""
    totals = {"batches": 0, "scanned": 0, "archived": 0, "net": 0}
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        while True:
            row = conn.execute("SELECT simtrail.compact_batch('0', %s)", (batch,)).fetchone()
            assert row is not None
            report: dict[str, Any] = row[0]
            totals["batches"] += 1
            for key in ("scanned", "archived", "net"):
                totals[key] += int(report[key])
            if report["done"]:
                return totals


def patient_of(db: Database, tenant: str, index: int = 0) -> str:
    return str(
        db.sql(
            "SELECT id FROM public.patients WHERE tenant_id = %s ORDER BY patient_id"
            " OFFSET %s LIMIT 1",
            (tenant, index),
        )[0]["id"]
    )


def set_room(db: Database, patient: str, room: str) -> int:
    """Update one patient; the id of the change that logged it."""
    db.sql("UPDATE public.patients SET room_number = %s WHERE id = %s", (room, patient))
    return last_change(db, "public.patients", patient)


def last_change(db: Database, table: str, row_id: str) -> int:
    change: int = db.sql(
        "SELECT max(id) AS id FROM simtrail.changes WHERE table_name = %s AND row_pk ->> 'id' = %s",
        (table, row_id),
    )[0]["id"]
    return change


def count(db: Database, relation: str) -> int:
    return int(db.sql(f"SELECT count(*) AS n FROM {relation}")[0]["n"])


def written(db: Database) -> tuple[int, int, int, dict[str, rewindkit.State]]:
    """What a refused rewind must leave alone."""
    return (
        rewindkit.log_size(db),
        count(db, "simtrail.rewinds"),
        count(db, "simtrail.archive"),
        rewindkit.all_states(db),
    )


def refusal(db: Database, tenant: str, target: str) -> psycopg.Error:
    try:
        rewind(db, tenant, target)
    except psycopg.Error as exc:
        return exc
    raise AssertionError(f"rewind of {tenant} to {target} should have been refused")


def archive_partitions(db: Database) -> list[str]:
    return [
        r["name"]
        for r in db.sql(
            "SELECT c.relname::text AS name FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'simtrail.archive'::regclass ORDER BY 1"
        )
    ]


def partition_name(day: datetime) -> str:
    return "archive_" + day.astimezone(UTC).strftime("%Y%m%d")


def test_a_time_target_resolves_to_the_last_tick_before_it(seeded_db: Database) -> None:
    db = seeded_db
    tenant = rewindkit.tenants(db)[0]
    patient = patient_of(db, tenant)
    set_room(db, patient, "101")
    ticked = tick(db)
    at_tick = state(db, tenant)
    time.sleep(0.005)
    between = clock(db)
    time.sleep(0.005)
    set_room(db, patient, "102")
    db.sql(
        "INSERT INTO public.patient_vitals (tenant_id, patient_id, heart_rate) VALUES (%s, %s, 88)",
        (tenant, patient),
    )
    assert state(db, tenant) != at_tick

    report = rewind(db, tenant, between.isoformat())
    assert state(db, tenant) == at_tick
    resolved = report["resolved"]
    assert resolved["kind"] == "time"
    assert resolved["cut"] == "tick" and resolved["precision"].startswith("exact")
    assert datetime.fromisoformat(resolved["cut_at"]) == ticked
    assert report["totals"] == {"deleted": 1, "restored": 0, "reverted": 1}


@pytest.mark.parametrize("cut", ["tick", "mark"])
def test_a_transaction_straddling_a_tick_is_not_in_that_ticks_state(
    seeded_db: Database, cut: str
) -> None:
    db = seeded_db
    tenant = rewindkit.tenants(db)[0]
    tick(db)
    with psycopg.connect(db.dsn) as writer:
        # Begun and already logged before the cut, committed after it.
        writer.execute(
            "UPDATE public.patients SET room_number = 'straddle' WHERE tenant_id = %s", (tenant,)
        )
        time.sleep(0.005)
        if cut == "tick":
            cut_at = tick(db)
        else:
            mark(db, tenant, "during")
        # What every reader saw at the cut: none of the writer's rows.
        seen = state(db, tenant)
        writer.commit()
    time.sleep(0.005)
    later = tick(db)
    assert state(db, tenant) != seen
    target = (cut_at + (later - cut_at) / 2).isoformat() if cut == "tick" else "mark:during"
    rewind(db, tenant, target)
    assert state(db, tenant) == seen


def test_compaction_shrinks_the_log_and_archives_the_originals_by_day(
    seeded_db: Database,
) -> None:
    db = seeded_db
    tenant = rewindkit.tenants(db)[0]
    patient = patient_of(db, tenant)
    start = tick(db)
    at_start = state(db, tenant)
    originals = []
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        conn.execute("SET simtrail.actor = 'instructor-7'")
        for acuity in ("guarded", "serious", "critical"):
            conn.execute("UPDATE public.patients SET acuity = %s WHERE id = %s", (acuity, patient))
            originals.append(last_change(db, "public.patients", patient))
    tick(db)
    before = {
        r["id"]: r
        for r in db.sql(
            "SELECT id, tenant_id, table_name, operation, row_pk, old_data, new_data,"
            " xact_id::text AS xact_id, changed_at FROM simtrail.changes WHERE id = ANY(%s)",
            (originals,),
        )
    }
    log_before = rewindkit.log_size(db)

    with pytest.raises(psycopg.Error) as bad_batch:
        db.sql("SELECT simtrail.compact_batch('0', 0)")
    assert bad_batch.value.sqlstate == "22023"
    # Every tick is younger than an hour: nothing is old enough yet.
    young = db.sql("SELECT simtrail.compact_batch('1 hour', 100) AS r")[0]["r"]
    assert young == {"done": True, "scanned": 0, "archived": 0, "net": 0}

    totals = compact(db)
    assert (totals["archived"], totals["net"]) == (3, 1)
    assert rewindkit.log_size(db) == log_before - 2
    nets = db.sql(
        "SELECT id, net_from, net_count, operation, old_data ->> 'acuity' AS old_acuity,"
        " new_data ->> 'acuity' AS new_acuity FROM simtrail.changes WHERE net_from IS NOT NULL"
    )
    assert nets == [
        {
            "id": originals[-1],
            "net_from": originals[0],
            "net_count": 3,
            "operation": "UPDATE",
            "old_acuity": before[originals[0]]["old_data"]["acuity"],
            "new_acuity": "critical",
        }
    ]

    archived = db.sql(
        "SELECT tableoid::regclass::text AS part, id, tenant_id, table_name, operation, row_pk,"
        " old_data, new_data, xact_id::text AS xact_id, changed_at, actor, net_id"
        " FROM simtrail.archive ORDER BY id"
    )
    assert [r["id"] for r in archived] == originals
    for row in archived:
        original = before[row["id"]]
        assert {k: row[k] for k in original} == original
        assert row["part"] == "simtrail." + partition_name(row["changed_at"])
        assert row["actor"]["actor"] == "instructor-7"
        assert row["net_id"] == originals[-1]
    for name in archive_partitions(db):
        assert re.fullmatch(r"archive_\d{8}", name), name

    # Still exact after compaction.
    rewind(db, tenant, start.isoformat())
    assert state(db, tenant) == at_start


def test_a_rewinds_own_changes_keep_its_id_in_the_archive(seeded_db: Database) -> None:
    db = seeded_db
    tenant = rewindkit.tenants(db)[0]
    patient = patient_of(db, tenant)
    mark(db, tenant, "launch")
    launched = state(db, tenant)
    start = tick(db)
    set_room(db, patient, "a")
    set_room(db, patient, "b")
    rewind_id = rewind(db, tenant, "mark:launch")["rewind_id"]
    by_rewind = db.sql(
        "SELECT c.id FROM simtrail.changes c JOIN simtrail.transactions x USING (xact_id)"
        " WHERE x.rewind_id = %s",
        (rewind_id,),
    )
    assert len(by_rewind) == 1
    set_room(db, patient, "c")
    tick(db)
    # The two updates, the rewind's revert and the update after it: one row,
    # one segment, one net change.
    assert (compact(db)["net"], count(db, "simtrail.archive")) == (1, 4)
    archived = db.sql("SELECT id, rewind_id, actor FROM simtrail.archive ORDER BY id")
    assert [r["id"] for r in archived if r["rewind_id"] is not None] == [by_rewind[0]["id"]]
    assert {r["rewind_id"] for r in archived} == {None, rewind_id}
    assert all(r["actor"]["session_user"] for r in archived)

    rewind(db, tenant, start.isoformat())
    assert state(db, tenant) == launched


def test_a_change_target_inside_compacted_history_is_refused(seeded_db: Database) -> None:
    db = seeded_db
    tenant = rewindkit.tenants(db)[0]
    patient = patient_of(db, tenant)
    tick(db)
    first = set_room(db, patient, "a")
    second = set_room(db, patient, "b")
    tick(db)
    assert compact(db)["net"] == 1
    assert count(db, f"simtrail.archive WHERE id IN ({first}, {second})") == 2

    unchanged = written(db)
    for change in (first, second):
        refused = refusal(db, tenant, f"change:{change}")
        assert refused.sqlstate == "22023"
        assert "has been compacted" in str(refused)
        assert written(db) == unchanged

    # Changes newer than compaction are targets as before.
    third = set_room(db, patient, "c")
    after_third = state(db, tenant)
    set_room(db, patient, "d")
    rewind(db, tenant, f"change:{third}")
    assert state(db, tenant) == after_third


def test_a_primary_key_change_keeps_its_segment_unfolded(seeded_db: Database) -> None:
    db = seeded_db
    tenant = rewindkit.tenants(db)[0]
    patient = patient_of(db, tenant)
    team = db.sql(
        "SELECT user_id::text AS u FROM public.patient_care_team WHERE patient_id = %s"
        " ORDER BY user_id",
        (patient,),
    )
    assert len(team) >= 2
    moved, stays = team[0]["u"], team[1]["u"]
    mark(db, tenant, "launch")
    launched = state(db, tenant)
    tick(db)
    start = int(db.sql("SELECT max(id) AS id FROM simtrail.changes")[0]["id"])

    def set_role(user: str, role: str) -> None:
        db.sql(
            "UPDATE public.patient_care_team SET role = %s WHERE patient_id = %s AND user_id = %s",
            (role, patient, user),
        )

    # Segment 1: one member's key changes; another member's role twice; the
    # patient twice.
    db.sql(
        "UPDATE public.patient_care_team SET user_id = (SELECT u.id FROM public.user_profiles u"
        "  WHERE NOT EXISTS (SELECT 1 FROM public.patient_care_team c"
        "                   WHERE c.patient_id = %(p)s AND c.user_id = u.id)"
        "  ORDER BY u.id LIMIT 1)"
        " WHERE patient_id = %(p)s AND user_id = %(u)s",
        {"p": patient, "u": moved},
    )
    set_role(stays, "charge nurse")
    set_role(stays, "preceptor")
    set_room(db, patient, "x1")
    set_room(db, patient, "x2")
    middle = tick(db)
    at_middle = state(db, tenant)
    segment_one = [
        r["id"]
        for r in db.sql(
            "SELECT id FROM simtrail.changes WHERE table_name = 'public.patient_care_team'"
            " AND id > %s",
            (start,),
        )
    ]
    assert len(segment_one) == 3
    # Segment 2: the same role edits, with no key change.
    set_role(stays, "observer")
    set_role(stays, "student")
    tick(db)

    assert compact(db)["net"] == 2
    kept = db.sql(
        "SELECT id FROM simtrail.changes WHERE id = ANY(%s) AND net_from IS NULL", (segment_one,)
    )
    assert len(kept) == 3
    folded = db.sql(
        "SELECT table_name, net_count, new_data ->> 'role' AS role,"
        " new_data ->> 'room_number' AS room FROM simtrail.changes"
        " WHERE net_from IS NOT NULL ORDER BY id"
    )
    # The patient's two updates fold in segment 1 and the role edits in
    # segment 2; the care team of segment 1 stays as logged.
    assert [(r["table_name"], r["net_count"], r["role"] or r["room"]) for r in folded] == [
        ("public.patients", 2, "x2"),
        ("public.patient_care_team", 2, "student"),
    ]
    assert count(db, "simtrail.archive WHERE table_name = 'public.patient_care_team'") == 2

    rewind(db, tenant, middle.isoformat())
    assert state(db, tenant) == at_middle
    rewind(db, tenant, "mark:launch")
    assert state(db, tenant) == launched


def test_retention_drops_whole_old_days_and_refuses_targets_before_its_horizon(
    seeded_db: Database,
) -> None:
    db = seeded_db
    tenant = rewindkit.tenants(db)[0]
    patient = patient_of(db, tenant)
    # As if simtrail had been installed three months ago, so that the
    # horizon, not the start of the log, is what a target runs into.
    db.sql("UPDATE simtrail.schema_version SET installed_at = installed_at - interval '90 days'")
    tick(db)
    set_room(db, patient, "r1")
    set_room(db, patient, "r2")
    tick(db)
    assert compact(db)["archived"] == 2
    now = clock(db)
    today = partition_name(now)
    horizon_day = now - timedelta(days=30)
    old, before_horizon, at_horizon = (
        partition_name(now - timedelta(days=40)),
        partition_name(horizon_day - timedelta(days=1)),
        partition_name(horizon_day),
    )
    db.sql(
        "SELECT simtrail.ensure_archive_partitions(now() - interval '40 days',"
        " now() - interval '40 days')"
    )
    db.sql(
        "SELECT simtrail.ensure_archive_partitions(now() - interval '31 days',"
        " now() - interval '30 days')"
    )
    db.sql(
        "INSERT INTO simtrail.archive (id, tenant_id, table_name, operation, row_pk, xact_id,"
        " changed_at, net_id) VALUES (-1, %s, 'public.patients', 'UPDATE', '{}', '1',"
        " now() - interval '40 days', -1)",
        (tenant,),
    )
    assert archive_partitions(db) == sorted({old, before_horizon, at_horizon, today})
    assert count(db, "simtrail.archive") == 3

    kept_all = db.sql("SELECT simtrail.apply_retention(0) AS r")[0]["r"]
    assert kept_all == {"horizon": None, "dropped_partitions": []}
    assert len(archive_partitions(db)) == 4
    assert db.sql("SELECT horizon FROM simtrail.daemon_state")[0]["horizon"] is None

    report = db.sql("SELECT simtrail.apply_retention(30) AS r")[0]["r"]
    assert report["dropped_partitions"] == sorted([old, before_horizon])
    # Whole days only: the horizon's own day still holds history after it.
    assert archive_partitions(db) == sorted({at_horizon, today})
    assert count(db, "simtrail.archive") == 2
    horizon = db.sql("SELECT horizon FROM simtrail.daemon_state")[0]["horizon"]
    assert horizon == datetime.fromisoformat(report["horizon"])
    assert abs(horizon - (now - timedelta(days=30))) < timedelta(minutes=1)

    unchanged = written(db)
    refused = refusal(db, tenant, (horizon - timedelta(days=1)).isoformat())
    assert refused.sqlstate == "22023"
    assert "retention horizon" in str(refused)
    assert written(db) == unchanged
    # After the horizon but before any tick: nothing to resolve it through.
    refused = refusal(db, tenant, (horizon + timedelta(days=1)).isoformat())
    assert refused.sqlstate == "22023"
    assert "no tick or mark at or before" in str(refused)
    assert written(db) == unchanged


def test_thinning_keeps_the_window_and_one_tick_per_bucket_outside_it(
    installed_db: Database,
) -> None:
    db = installed_db
    db.sql(
        "INSERT INTO simtrail.ticks (at, snapshot, scan_from)"
        " SELECT now() - interval '3 hours' + k * interval '10 minutes', pg_current_snapshot(), 0"
        " FROM generate_series(0, 11) AS k"
        " UNION ALL"
        " SELECT now() - k * interval '1 minute', pg_current_snapshot(), 0"
        " FROM unnest(ARRAY[50, 20, 1]) AS k"
    )
    ticks = db.sql("SELECT id, at, now() - at < interval '1 hour' AS recent FROM simtrail.ticks")
    assert sum(t["recent"] for t in ticks) == 3
    first_per_bucket: dict[int, tuple[datetime, int]] = {}
    for t in ticks:
        if not t["recent"]:
            bucket = int(t["at"].timestamp() // 1800)
            first = (t["at"], t["id"])
            first_per_bucket[bucket] = min(first_per_bucket.get(bucket, first), first)
    expected = {t["id"] for t in ticks if t["recent"]} | {i for _, i in first_per_bucket.values()}
    # 110 minutes of old ticks: four or five half-hour buckets.
    assert len(first_per_bucket) in (4, 5)

    assert db.sql("SELECT simtrail.thin_ticks('1 hour', '0') AS n")[0]["n"] == 0
    deleted = db.sql("SELECT simtrail.thin_ticks('1 hour', '30 minutes') AS n")[0]["n"]
    assert deleted == 12 - len(first_per_bucket)
    assert {r["id"] for r in db.sql("SELECT id FROM simtrail.ticks")} == expected
    assert db.sql("SELECT simtrail.thin_ticks('1 hour', '30 minutes') AS n")[0]["n"] == 0


def test_a_time_before_every_tick_is_refused_once_the_tenant_is_compacted(
    seeded_db: Database,
) -> None:
    db = seeded_db
    tenant, other, *_ = rewindkit.tenants(db)
    patient = patient_of(db, tenant)
    early = clock(db)
    time.sleep(0.005)
    set_room(db, patient, "e1")
    set_room(db, patient, "e2")
    # No tick yet, and the seeding changed the tenant before it: no cut
    # places the time (transaction start times are never used).
    refused = refusal(db, tenant, early.isoformat())
    assert "no tick or mark at or before" in str(refused)

    tick(db)
    # The two updates fold with the seeding's insert of that patient.
    assert compact(db)["net"] == 1
    db.sql("UPDATE public.patients SET diagnosis = 'flu' WHERE tenant_id = %s", (other,))
    assert db.sql("SELECT DISTINCT tenant_id FROM simtrail.changes WHERE net_from IS NOT NULL") == [
        {"tenant_id": tenant}
    ]
    unchanged = written(db)
    refused = refusal(db, tenant, early.isoformat())
    assert refused.sqlstate == "22023"
    assert "no tick or mark at or before" in str(refused)
    assert written(db) == unchanged
    assert "no tick or mark at or before" in str(refusal(db, other, early.isoformat()))
    assert written(db) == unchanged


def test_daemon_stats_counts_what_is_there(seeded_db: Database) -> None:
    db = seeded_db
    tenant = rewindkit.tenants(db)[0]
    patient = patient_of(db, tenant)
    mark(db, tenant, "launch")
    tick(db)
    for room in ("s1", "s2", "s3"):
        set_room(db, patient, room)
    for _ in range(2):
        db.sql(
            "UPDATE public.patient_notes SET content = content || '.' WHERE tenant_id = %s",
            (tenant,),
        )
    tick(db)
    compact(db, batch=50)
    rewind(db, tenant, "mark:launch")

    stats = db.sql("SELECT simtrail.daemon_stats('0') AS s")[0]["s"]
    assert stats["net_rows"] > 1
    assert stats["log_rows"] == count(db, "simtrail.changes")
    assert stats["net_rows"] == count(db, "simtrail.changes WHERE net_from IS NOT NULL")
    assert stats["archive_rows"] == count(db, "simtrail.archive")
    assert stats["archive_partitions"] == len(archive_partitions(db))
    assert (stats["ticks"], stats["marks"], stats["rewinds"]) == (2, 1, 1)
    state_row = db.sql("SELECT compacted_below, horizon FROM simtrail.daemon_state")[0]
    assert stats["compacted_below"] == state_row["compacted_below"]
    assert stats["horizon"] is None
    assert stats["log_bytes"] > 0 and stats["archive_bytes"] > 0
    # The rewind's own changes came after the last tick, so compaction has
    # not reached them: behind a zero window, not behind an hour's.
    assert stats["compaction_lag_seconds"] > 0
    assert (
        db.sql("SELECT simtrail.daemon_stats('1 hour') AS s")[0]["s"]["compaction_lag_seconds"] == 0
    )


def test_a_rewind_waits_for_a_running_compaction_batch(seeded_db: Database) -> None:
    db = seeded_db
    tenant = rewindkit.tenants(db)[0]
    patient = patient_of(db, tenant)
    mark(db, tenant, "launch")
    launched = state(db, tenant)
    tick(db)
    for room in ("w1", "w2", "w3"):
        set_room(db, patient, room)
    db.sql("DELETE FROM public.patient_vitals WHERE tenant_id = %s", (tenant,))
    tick(db)

    result: dict[str, Any] = {}

    def run_rewind() -> None:
        try:
            result["report"] = rewind(db, tenant, "mark:launch")
        except BaseException as exc:
            result["error"] = exc

    with psycopg.connect(db.dsn) as compactor:
        batch = compactor.execute("SELECT simtrail.compact_batch('0', 10000)").fetchone()
        assert batch is not None and batch[0]["net"] >= 1
        rewinder = threading.Thread(target=run_rewind)
        rewinder.start()
        time.sleep(0.6)
        # The batch still holds the log: the rewind has not got past it.
        assert rewinder.is_alive()
        compactor.commit()
    rewinder.join(60)
    assert not rewinder.is_alive()
    assert "error" not in result, result.get("error")
    assert result["report"]["attempts"] > 1
    assert state(db, tenant) == launched
