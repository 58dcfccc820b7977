"""Marks and history through the real CLI."""

from __future__ import annotations

import json
import threading
from typing import Any

import psycopg
import pytest

from tests import rewindkit
from tests.conftest import Database, run_cli


def test_mark_create_list_delete(seeded_db: Database) -> None:
    db = seeded_db
    tenant = rewindkit.tenants(db)[0]
    created = run_cli("mark", "create", "--tenant", tenant.upper(), "launch", "--json", dsn=db.dsn)
    assert created.exit_code == 0, created.stderr
    assert json.loads(created.stdout)["tenant"] == tenant  # canonical form of the key
    run_cli("mark", "create", "--tenant", tenant, "after lunch", dsn=db.dsn)
    listed = json.loads(run_cli("mark", "list", "--tenant", tenant, "--json", dsn=db.dsn).stdout)
    assert [m["name"] for m in listed] == ["launch", "after lunch"]
    assert run_cli("mark", "delete", "--tenant", tenant, "after lunch", dsn=db.dsn).exit_code == 0
    again = run_cli("mark", "delete", "--tenant", tenant, "after lunch", dsn=db.dsn)
    assert again.exit_code == 2 and "has no mark" in again.stderr
    bad = run_cli("mark", "create", "--tenant", tenant, "", dsn=db.dsn)
    assert bad.exit_code == 2 and "mark name" in bad.stderr
    unknown = run_cli(
        "mark", "list", "--tenant", "00000000-0000-0000-0000-000000000001", dsn=db.dsn
    )
    assert unknown.exit_code == 2 and "unknown tenant" in unknown.stderr
    assert db.sql("SELECT count(*) AS n FROM simtrail.marks")[0]["n"] == 1


def test_history_shows_who_what_and_a_column_diff(seeded_db: Database) -> None:
    db = seeded_db
    tenant = rewindkit.tenants(db)[1]
    patient = db.sql(
        "SELECT id::text, room_number FROM public.patients WHERE tenant_id = %s LIMIT 1",
        (tenant,),
    )[0]
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        conn.execute("SET simtrail.actor = 'nurse.kim@school.example'")
        conn.execute(
            "UPDATE public.patients SET room_number = '9Z-99' WHERE id = %s", (patient["id"],)
        )
    out = run_cli("history", "--tenant", tenant, "--table", "patients", "--limit", "1", dsn=db.dsn)
    assert out.exit_code == 0, out.stderr
    assert "UPDATE public.patients" in out.stdout and patient["id"] in out.stdout
    assert "nurse.kim@school.example" in out.stdout
    assert f"room_number: {patient['room_number']} → 9Z-99" in out.stdout
    rows = json.loads(
        run_cli("history", "--tenant", tenant, "--limit", "1", "--json", dsn=db.dsn).stdout
    )
    assert rows[0]["diff"]["room_number"] == [patient["room_number"], "9Z-99"]
    everything = run_cli("history", "--tenant", tenant, "--limit", "100000", "--json", dsn=db.dsn)
    logged = db.sql("SELECT count(*) AS n FROM simtrail.changes WHERE tenant_id = %s", (tenant,))
    assert len(json.loads(everything.stdout)) == logged[0]["n"]


def new_class(db: Database, name: str = "NURS 101 - Section Z") -> str:
    """A class that exists in the app's tenants table and has nothing in it yet."""
    rows = db.sql("INSERT INTO public.tenants (name) VALUES (%s) RETURNING id::text", (name,))
    return str(rows[0]["id"])


def chart_first_patient(db: Database, tenant: str) -> None:
    """A patient with children through each kind of path: own tenant_id, patient, wound."""
    db.sql(
        "WITH p AS (INSERT INTO public.patients (tenant_id, patient_id, first_name, last_name,"
        "  date_of_birth) VALUES (%(t)s, 'MRN-900001', 'Ada', 'Lovelace', '1990-01-01')"
        "  RETURNING id),"
        " v AS (INSERT INTO public.patient_vitals (tenant_id, patient_id, heart_rate)"
        "  SELECT %(t)s, p.id, 72 FROM p),"
        " h AS (INSERT INTO public.handover_notes (patient_id, shift, sbar)"
        "  SELECT p.id, 'day', '{}' FROM p),"
        " w AS (INSERT INTO public.patient_wounds (patient_id, location, wound_type)"
        "  SELECT p.id, 'sacrum', 'pressure' FROM p RETURNING id)"
        " INSERT INTO public.wound_assessments (wound_id, length_cm) SELECT w.id, 1.5 FROM w",
        {"t": tenant},
    )


def test_a_class_with_no_rows_yet_can_be_marked_and_reset_to_empty(seeded_db: Database) -> None:
    db = seeded_db
    others = rewindkit.all_states(db)
    fresh = new_class(db)
    launched = rewindkit.state(db, fresh)
    assert all(count == 0 for count, _ in launched.values())

    marked = run_cli("mark", "create", "--tenant", fresh, "launch", "--json", dsn=db.dsn)
    assert marked.exit_code == 0, marked.stderr
    assert json.loads(marked.stdout)["tenant"] == fresh

    chart_first_patient(db, fresh)
    charted = rewindkit.state(db, fresh)
    for table in ("public.patients", "public.patient_vitals", "public.handover_notes",
                  "public.patient_wounds", "public.wound_assessments"):
        assert charted[table][0] == 1, table

    reset = run_cli("reset", "--tenant", fresh, "--json", dsn=db.dsn)
    assert reset.exit_code == 0, reset.stderr
    report = json.loads(reset.stdout)
    assert report["totals"] == {"deleted": 5, "restored": 0, "reverted": 0}
    assert rewindkit.state(db, fresh) == launched
    # Exactly those rows: every other class is as it was.
    assert {t: s for t, s in rewindkit.all_states(db).items() if t != fresh} == others


def test_a_mark_needs_a_tenant_the_app_knows(seeded_db: Database) -> None:
    db = seeded_db
    not_a_uuid = run_cli("mark", "create", "--tenant", "section-z", "launch", dsn=db.dsn)
    assert not_a_uuid.exit_code == 2
    assert "tenant 'section-z' is not a valid uuid value" in not_a_uuid.stderr
    # patients.tenant_id references public.tenants: a key that is not there is refused.
    stranger = "00000000-0000-0000-0000-00000000abcd"
    unknown = run_cli("mark", "create", "--tenant", stranger, "launch", dsn=db.dsn)
    assert unknown.exit_code == 2
    assert unknown.stderr.strip() == (
        f"simtrail: error: unknown tenant {stranger}: not in public.tenants"
    )
    # Nothing that can be undone for it: a rewind says so too.
    rewind = run_cli("rewind", "--tenant", stranger, "--to", "mark:launch", dsn=db.dsn)
    assert rewind.exit_code == 2 and "unknown tenant" in rewind.stderr
    assert db.sql("SELECT count(*) AS n FROM simtrail.marks")[0]["n"] == 0


def test_without_a_tenants_table_any_key_of_the_type_can_be_marked(seeded_db: Database) -> None:
    db = seeded_db
    db.sql("ALTER TABLE public.patients DROP CONSTRAINT patients_tenant_id_fkey")
    fresh = "00000000-0000-0000-0000-00000000beef"
    marked = run_cli("mark", "create", "--tenant", fresh.upper(), "launch", "--json", dsn=db.dsn)
    assert marked.exit_code == 0, marked.stderr
    assert json.loads(marked.stdout)["tenant"] == fresh
    bad = run_cli("mark", "create", "--tenant", "12", "launch", dsn=db.dsn)
    assert bad.exit_code == 2 and "is not a valid uuid value" in bad.stderr
    db.sql("INSERT INTO public.tenants (id, name) VALUES (%s, 'late')", (fresh,))
    chart_first_patient(db, fresh)
    assert run_cli("reset", "--tenant", fresh, dsn=db.dsn).exit_code == 0
    assert all(count == 0 for count, _ in rewindkit.state(db, fresh).values())


def marks_of(db: Database, tenant: str) -> list[dict[str, Any]]:
    return db.sql(
        "SELECT id, name FROM simtrail.marks WHERE tenant_id = %s ORDER BY id", (tenant,)
    )


def test_a_mark_name_in_use_is_refused_unless_replaced(seeded_db: Database) -> None:
    db = seeded_db
    tenant = rewindkit.tenants(db)[0]
    assert run_cli("mark", "create", "--tenant", tenant, "launch", dsn=db.dsn).exit_code == 0
    first = marks_of(db, tenant)
    db.sql("UPDATE public.patients SET room_number = '7C-01' WHERE tenant_id = %s", (tenant,))
    relaunched = rewindkit.state(db, tenant)

    again = run_cli("mark", "create", "--tenant", tenant, "launch", dsn=db.dsn)
    assert again.exit_code == 2
    assert again.stdout == ""
    assert again.stderr.strip() == (
        f"simtrail: error: tenant {tenant} already has a mark 'launch'; "
        "choose another name, or replace it (--replace)"
    )
    assert marks_of(db, tenant) == first
    # The SQL function's first signature refuses as well.
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="already has a mark"):
        db.sql("SELECT simtrail.mark(%s, 'launch')", (tenant,))

    replaced = run_cli(
        "mark", "create", "--tenant", tenant, "launch", "--replace", "--json", dsn=db.dsn
    )
    assert replaced.exit_code == 0, replaced.stderr
    assert json.loads(replaced.stdout)["replaced"] == 1
    now = marks_of(db, tenant)
    assert [m["name"] for m in now] == ["launch"] and now[0]["id"] > first[0]["id"]

    # reset goes to the new launch point, which keeps the room change.
    db.sql("DELETE FROM public.patient_vitals WHERE tenant_id = %s", (tenant,))
    assert run_cli("reset", "--tenant", tenant, dsn=db.dsn).exit_code == 0
    assert rewindkit.state(db, tenant) == relaunched

    # Over SQL: the three-argument form replaces; the old point is gone.
    row = db.sql("SELECT simtrail.mark(%s, 'launch', true) AS m", (tenant,))[0]["m"]
    assert row["replaced"] == 1
    assert [m["id"] for m in marks_of(db, tenant)] == [row["id"]]


def test_two_sessions_cannot_both_take_a_mark_name(seeded_db: Database) -> None:
    db = seeded_db
    tenant = rewindkit.tenants(db)[0]
    with psycopg.connect(db.dsn) as first, psycopg.connect(db.dsn) as second:
        first.execute("SELECT simtrail.mark(%s, 'quiz')", (tenant,))  # not committed yet
        result: list[BaseException | None] = []

        def mark_too() -> None:
            try:
                second.execute("SELECT simtrail.mark(%s, 'quiz')", (tenant,))
                second.commit()
                result.append(None)
            except psycopg.Error as exc:
                result.append(exc)

        waiter = threading.Thread(target=mark_too)
        waiter.start()
        waiter.join(timeout=1)
        assert waiter.is_alive(), "the second mark must wait for the first"
        first.commit()
        waiter.join(timeout=10)
    assert isinstance(result[0], psycopg.errors.InvalidParameterValue), result
    assert [m["name"] for m in marks_of(db, tenant)] == ["quiz"]


def test_history_text_and_json_list_the_same_timeline_with_marks(seeded_db: Database) -> None:
    db = seeded_db
    tenant = rewindkit.tenants(db)[2]
    patients = [
        r["id"]
        for r in db.sql(
            "SELECT id::text FROM public.patients WHERE tenant_id = %s ORDER BY id LIMIT 2",
            (tenant,),
        )
    ]
    db.sql("UPDATE public.patients SET room_number = 'A-1' WHERE id = %s", (patients[0],))
    assert run_cli("mark", "create", "--tenant", tenant, "after rounds", dsn=db.dsn).exit_code == 0
    db.sql("UPDATE public.patients SET room_number = 'B-2' WHERE id = %s", (patients[1],))

    args = ("history", "--tenant", tenant, "--table", "patients", "--limit", "3")
    entries = json.loads(run_cli(*args, "--json", dsn=db.dsn).stdout)
    text = run_cli(*args, dsn=db.dsn).stdout
    # Oldest first in both: the first room change, the mark, the second room change.
    assert [e["kind"] for e in entries] == ["change", "mark", "change"]
    assert [e["row_pk"]["id"] for e in entries if e["kind"] == "change"] == patients
    assert entries[1]["name"] == "after rounds"
    headers = [line for line in text.splitlines() if not line.startswith(" ")]
    assert len(headers) == 3
    assert headers[0].startswith(f"#{entries[0]['id']} ")
    assert headers[1].startswith('mark "after rounds"  ')
    assert headers[2].startswith(f"#{entries[2]['id']} ")
    assert text.index("→ A-1") < text.index('mark "after rounds"') < text.index("→ B-2")
