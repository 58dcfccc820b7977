"""I5 around config edits: writes made while capture is detached are never lost silently."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime

import psycopg

from tests import rewindkit
from tests.catalog import invoke
from tests.conftest import Database


def config_enabled(db: Database, table: str, enabled: bool) -> None:
    db.sql(
        "UPDATE public.simulation_table_config SET enabled = %s WHERE table_name = %s",
        (enabled, table),
    )


def test_writes_while_detached_are_recorded_reported_and_block_rewinds(
    seeded_db: Database,
) -> None:
    db = seeded_db
    tenant = rewindkit.tenants(db)[0]
    patient = db.sql(
        "SELECT id::text FROM public.patients WHERE tenant_id = %s ORDER BY id LIMIT 1", (tenant,)
    )[0]["id"]
    rewindkit.mark(db, tenant, "before")

    stop = threading.Event()
    inserted: list[str] = []
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            with psycopg.connect(db.dsn, autocommit=True) as conn:
                while not stop.is_set():
                    row = conn.execute(
                        "INSERT INTO public.patient_vitals (tenant_id, patient_id, heart_rate,"
                        " recorded_at) VALUES (%s, %s, 60, clock_timestamp()) RETURNING id",
                        (tenant, patient),
                    ).fetchone()
                    assert row is not None
                    inserted.append(str(row[0]))
        except BaseException as exc:  # surfaced in the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    # Delete-and-re-add of a config row, with a sync (daemon or install) between.
    config_enabled(db, "patient_vitals", False)
    db.sql("SELECT * FROM simtrail.sync(true)")
    time.sleep(0.5)
    config_enabled(db, "patient_vitals", True)
    db.sql("SELECT * FROM simtrail.sync(true)")
    time.sleep(0.3)
    stop.set()
    for thread in threads:
        thread.join()
    assert errors == []

    logged = {
        str(r["row_pk"]["id"])
        for r in db.sql(
            "SELECT row_pk FROM simtrail.changes WHERE table_name = 'public.patient_vitals'"
            " AND operation = 'INSERT'"
        )
    }
    lost = [i for i in inserted if i not in logged]
    assert lost, "the writers should have run while capture was detached"

    # The window is on record, and every lost write falls inside it.
    [gap] = db.sql("SELECT * FROM simtrail.capture_gaps")
    assert gap["table_name"] == "public.patient_vitals"
    assert gap["closed_at"] is not None
    times: list[datetime] = [
        r["recorded_at"]
        for r in db.sql(
            "SELECT recorded_at FROM public.patient_vitals WHERE id = ANY(%s::uuid[])", (lost,)
        )
    ]
    assert all(gap["opened_at"] <= t <= gap["closed_at"] for t in times)
    # Writes after it are captured again.
    assert inserted[-1] in logged

    # doctor says so.
    result = invoke(db.dsn, "doctor", "--json")
    findings = json.loads(result.stdout)["findings"]
    assert [(f["severity"], f["kind"], f["table_name"]) for f in findings] == [
        ("warning", "capture_gap", "public.patient_vitals")
    ]
    assert "were not captured" in findings[0]["detail"]

    # A rewind to a point before the window's end cannot undo what was
    # written in it: it refuses, naming table and window, unless forced.
    before = rewindkit.all_states(db)
    try:
        rewindkit.rewind(db, tenant, "mark:before")
    except psycopg.errors.ObjectNotInPrerequisiteState as exc:
        message = str(exc)
    else:
        raise AssertionError("the rewind should have been refused")
    assert "public.patient_vitals from " in message
    assert str(gap["closed_at"].year) in message
    assert rewindkit.all_states(db) == before
    cli = invoke(db.dsn, "rewind", "--tenant", tenant, "--to", "mark:before", "--dry-run")
    assert cli.exit_code != 0
    assert "public.patient_vitals" in cli.stderr

    forced = rewindkit.rewind(db, tenant, "mark:before", force=True)
    assert [g["table"] for g in forced["resolved"]["capture_gaps_ignored"]] == [
        "public.patient_vitals"
    ]

    # A target after the window is not affected by it.
    rewindkit.mark(db, tenant, "after")
    db.sql(
        "INSERT INTO public.patient_vitals (tenant_id, patient_id, heart_rate) VALUES (%s, %s, 61)",
        (tenant, patient),
    )
    assert "capture_gaps_ignored" not in rewindkit.rewind(db, tenant, "mark:after")["resolved"]


def test_a_detached_table_shows_as_an_open_window(seeded_db: Database) -> None:
    db = seeded_db
    config_enabled(db, "patient_vitals", False)
    db.sql("SELECT * FROM simtrail.sync(true)")
    [gap] = db.sql("SELECT table_name, closed_at FROM simtrail.capture_gaps")
    assert gap == {"table_name": "public.patient_vitals", "closed_at": None}
    result = invoke(db.dsn, "doctor", "--json")
    [finding] = json.loads(result.stdout)["findings"]
    assert finding["kind"] == "capture_gap"
    assert finding["detail"].startswith("not captured since ")
    # Detaching twice opens no second window.
    db.sql("SELECT simtrail.detach('public.patient_vitals'::regclass)")
    assert len(db.sql("SELECT 1 FROM simtrail.capture_gaps")) == 1
    # Once the table itself is gone, the open window has nothing left to lose.
    db.sql("DELETE FROM public.simulation_table_config WHERE table_name = 'patient_vitals'")
    db.sql("DROP TABLE public.patient_vitals")
    result = invoke(db.dsn, "doctor", "--json")
    assert [f for f in json.loads(result.stdout)["findings"] if f["kind"] == "capture_gap"] == []
