"""Schema changes of captured tables after capture: a renamed column and a
dropped table. A rewind either handles them exactly or refuses and says why;
doctor reports both, with the command that fixes a dropped table."""

from __future__ import annotations

import json

import psycopg
import pytest

from tests import rewindkit
from tests.conftest import Database, run_cli
from tests.rewindkit import mark, rewind, state


def a_patient(db: Database, tenant: str) -> str:
    return str(
        db.sql(
            "SELECT id FROM public.patients WHERE tenant_id = %s ORDER BY patient_id LIMIT 1",
            (tenant,),
        )[0]["id"]
    )


def doctor(db: Database) -> list[dict[str, str]]:
    done = run_cli("doctor", "--json", dsn=db.dsn)
    findings: list[dict[str, str]] = json.loads(done.stdout)["findings"]
    return findings


def test_rewind_across_a_column_rename_is_refused_and_names_the_column(
    seeded_db: Database,
) -> None:
    db = seeded_db
    tenant = rewindkit.tenants(db)[0]
    patient = a_patient(db, tenant)
    mark(db, tenant, "before")
    before = state(db, tenant)
    db.sql("UPDATE public.patients SET room_number = 'ICU-1' WHERE id = %s", (patient,))
    db.sql("ALTER TABLE public.patients RENAME COLUMN room_number TO room")

    with pytest.raises(psycopg.Error) as refused:
        rewind(db, tenant, "mark:before")
    assert refused.value.sqlstate == "55000"
    message = str(refused.value)
    assert "public.patients.room_number was renamed to room" in message
    assert db.sql("SELECT room FROM public.patients WHERE id = %s", (patient,))[0]["room"] == (
        "ICU-1"
    )
    assert state(db, tenant) != before

    findings = [f for f in doctor(db) if f["kind"] == "renamed_column"]
    assert findings == [
        {
            "severity": "warning",
            "kind": "renamed_column",
            "table_name": "public.patients",
            "detail": "column room_number was renamed to room; the log's older images use the"
            " old name, so rewinds to targets before the rename are refused",
            "fix": "to rewind across the rename, first ALTER TABLE public.patients RENAME COLUMN"
            " room TO room_number; rewinds to later targets need nothing",
        }
    ]

    # After the rename, images carry the new name: a rewind to a mark taken
    # then is exact.
    mark(db, tenant, "after")
    after = state(db, tenant)
    db.sql("UPDATE public.patients SET room = 'ICU-2' WHERE id = %s", (patient,))
    report = rewind(db, tenant, "mark:after")
    assert report["totals"]["reverted"] == 1
    assert state(db, tenant) == after
    assert db.sql("SELECT room FROM public.patients WHERE id = %s", (patient,))[0]["room"] == (
        "ICU-1"
    )


def test_a_dropped_table_is_retired_and_rewinds_of_the_rest_stay_exact(
    seeded_db: Database,
) -> None:
    db = seeded_db
    tenant, other = rewindkit.tenants(db)[:2]
    patient = a_patient(db, tenant)
    mark(db, tenant, "before")
    before = state(db, tenant)
    db.sql("UPDATE public.patients SET room_number = 'ICU-1' WHERE id = %s", (patient,))
    db.sql("DELETE FROM public.bowel_records WHERE tenant_id = %s", (tenant,))
    db.sql("DROP TABLE public.bowel_records")
    others = state(db, other)

    with pytest.raises(psycopg.Error) as refused:
        rewind(db, tenant, "mark:before")
    assert refused.value.sqlstate == "55000"
    assert "public.bowel_records" in str(refused.value)
    assert "simtrail config retire" in str(refused.value)

    dropped = [f for f in doctor(db) if f["kind"] == "dropped_table"]
    assert dropped == [
        {
            "severity": "error",
            "kind": "dropped_table",
            "table_name": "bowel_records",
            "detail": "public.bowel_records was captured and has been dropped; run"
            " `simtrail config retire bowel_records` (its history stays in the log)",
            "fix": "simtrail config retire bowel_records",
        }
    ]

    # Only a dropped table can be retired.
    kept = run_cli("config", "retire", "patients", dsn=db.dsn)
    assert kept.exit_code == 2 and "still exists" in kept.stderr
    changes_before = rewindkit.log_size(db)

    done = run_cli("config", "retire", "bowel_records", dsn=db.dsn)
    assert done.exit_code == 0, done.stderr
    assert "retired public.bowel_records: 1 config row(s) removed" in done.stdout
    assert not db.sql(
        "SELECT 1 FROM public.simulation_table_config WHERE table_name = 'bowel_records'"
    )
    # Its history stays.
    assert rewindkit.log_size(db) == changes_before
    assert (
        db.sql(
            "SELECT count(*) AS n FROM simtrail.changes WHERE table_name = 'public.bowel_records'"
        )[0]["n"]
        > 0
    )

    installed = run_cli("install", dsn=db.dsn)
    assert installed.exit_code == 0, installed.stderr
    assert doctor(db) == []

    report = rewind(db, tenant, "mark:before")
    assert report["totals"]["reverted"] == 1
    expected = {k: v for k, v in before.items() if k != "public.bowel_records"}
    assert state(db, tenant) == expected
    assert state(db, other) == others
