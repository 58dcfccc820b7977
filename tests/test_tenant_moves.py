"""Rows that change tenant after the target, and what a rewind does with them.

The rule is symmetric. A row that left the tenant comes back (refused when it
now lives in another class). A row that entered from no tenant goes back to
no tenant, with the image it had before the move. A row that entered from
another class is refused and named; forced, it is deleted from this tenant and
the other class is left as it is.
"""

from __future__ import annotations

import json
import time
from typing import Any

import psycopg

from tests import rewindkit
from tests.conftest import Database, run_cli
from tests.rewindkit import mark, rewind, state


def loose_patient(db: Database, tenant: str | None, mrn: str) -> str:
    """A patient whose only children reach their tenant through it: a handover
    note, and a wound with an assessment (two hops)."""
    pid = str(
        db.sql(
            "INSERT INTO public.patients (tenant_id, patient_id, first_name, last_name,"
            " date_of_birth, room_number) VALUES (%s, %s, 'Lou', 'Loose', '1970-03-03', 'R1')"
            " RETURNING id",
            (tenant, mrn),
        )[0]["id"]
    )
    db.sql(
        "INSERT INTO public.handover_notes (patient_id, shift, sbar) VALUES (%s, 'day', %s)",
        (pid, json.dumps({"s": "stable"})),
    )
    wound = db.sql(
        "INSERT INTO public.patient_wounds (patient_id, location, wound_type)"
        " VALUES (%s, 'sacrum', 'pressure') RETURNING id",
        (pid,),
    )[0]["id"]
    db.sql("INSERT INTO public.wound_assessments (wound_id, length_cm) VALUES (%s, 2.5)", (wound,))
    return pid


def family(db: Database, pid: str) -> dict[str, Any]:
    """The patient row and its tenant-less children, as they are now."""
    return {
        "patient": db.sql("SELECT to_jsonb(p) AS r FROM public.patients p WHERE id = %s", (pid,)),
        "notes": db.sql(
            "SELECT to_jsonb(h) AS r FROM public.handover_notes h WHERE patient_id = %s"
            " ORDER BY id",
            (pid,),
        ),
        "wounds": db.sql(
            "SELECT to_jsonb(w) AS r FROM public.patient_wounds w WHERE patient_id = %s"
            " ORDER BY id",
            (pid,),
        ),
        "assessments": db.sql(
            "SELECT to_jsonb(a) AS r FROM public.wound_assessments a JOIN public.patient_wounds w"
            " ON w.id = a.wound_id WHERE w.patient_id = %s ORDER BY a.id",
            (pid,),
        ),
    }


def move(db: Database, pid: str, tenant: str | None) -> None:
    db.sql("UPDATE public.patients SET tenant_id = %s WHERE id = %s", (tenant, pid))


def test_a_row_moved_in_from_no_tenant_and_back_out_does_not_break_rewinds(
    seeded_db: Database,
) -> None:
    db = seeded_db
    tenant = rewindkit.tenants(db)[0]
    pid = loose_patient(db, None, "MRN-LOOSE")
    mark(db, tenant, "launch")
    launched = state(db, tenant)
    move(db, pid, tenant)
    move(db, pid, None)
    loose = family(db, pid)
    db.sql("UPDATE public.patients SET room_number = 'moved' WHERE tenant_id = %s", (tenant,))

    for dry_run, force in ((True, False), (True, True), (False, True)):
        report = rewind(db, tenant, "mark:launch", dry_run=dry_run, force=force)
        assert report["rows_drifted"] == 0
        assert report["moved_in"] == {"deleted": 0, "returned": 0}
    assert state(db, tenant) == launched
    # The patient was not the tenant's at the mark, nor is it now: left alone.
    assert family(db, pid) == loose
    cli = run_cli("rewind", "--tenant", tenant, "--to", "mark:launch", "--dry-run", dsn=db.dsn)
    assert cli.exit_code == 0, cli.stderr


def test_a_row_that_entered_from_no_tenant_goes_back_to_no_tenant(seeded_db: Database) -> None:
    db = seeded_db
    tenant, other = rewindkit.tenants(db)[:2]
    pid = loose_patient(db, None, "MRN-LOOSE")
    mark(db, tenant, "launch")
    launched, loose, others = state(db, tenant), family(db, pid), state(db, other)
    move(db, pid, tenant)
    # Worked on as the tenant's own: the row and a child change, a child is added.
    db.sql("UPDATE public.patients SET room_number = 'ICU-4' WHERE id = %s", (pid,))
    db.sql("UPDATE public.handover_notes SET shift = 'night' WHERE patient_id = %s", (pid,))
    db.sql(
        "INSERT INTO public.handover_notes (patient_id, shift, sbar) VALUES (%s, 'day', '{}')",
        (pid,),
    )
    mark(db, tenant, "worked")
    worked = state(db, tenant)

    plan = rewind(db, tenant, "mark:launch", dry_run=True)
    assert plan["moved_in"] == {"deleted": 0, "returned": 4}
    assert plan["tables"]["public.patients"]["reverted"] == 1
    assert plan["tables"]["public.handover_notes"] == {"deleted": 1, "restored": 0, "reverted": 1}
    report = rewind(db, tenant, "mark:launch")
    assert report["moved_in"] == {"deleted": 0, "returned": 4}
    assert state(db, tenant) == launched
    assert state(db, other) == others
    # Back to no tenant with its pre-move image, not deleted; the note added
    # while it was the tenant's is gone.
    assert family(db, pid) == loose
    # And the undo brings it back into the tenant as it was worked on.
    rewind(db, tenant, "mark:worked")
    assert state(db, tenant) == worked


def test_a_row_that_entered_from_another_class_is_refused_and_named(seeded_db: Database) -> None:
    db = seeded_db
    tenant, source = rewindkit.tenants(db)[:2]
    pid = loose_patient(db, source, "MRN-VISITOR")
    mark(db, tenant, "launch")
    mark(db, source, "launch")
    launched, from_source = state(db, tenant), state(db, source)
    visitor = family(db, pid)
    move(db, pid, tenant)
    db.sql("UPDATE public.patients SET room_number = 'moved' WHERE tenant_id = %s", (tenant,))
    before, log = rewindkit.all_states(db), rewindkit.log_size(db)

    assert rewindkit.rewind_error(db, tenant, "mark:launch") == "55000"
    refused = run_cli("rewind", "--tenant", tenant, "--to", "mark:launch", dsn=db.dsn)
    assert refused.exit_code == 3
    line = refused.stderr.strip()
    assert len(line.splitlines()) == 1
    assert "entered tenant" in line and "public.patients" in line and pid in line
    assert f"from tenant {source}" in line and "force" in line
    dry = run_cli("rewind", "--tenant", tenant, "--to", "mark:launch", "--dry-run", dsn=db.dsn)
    assert dry.exit_code == 3 and "entered tenant" in dry.stderr
    assert rewindkit.all_states(db) == before and rewindkit.log_size(db) == log

    # Forced: deleted from this tenant with its tenant-less children; the
    # class it came from is not touched.
    forced = run_cli(
        "rewind", "--tenant", tenant, "--to", "mark:launch", "--force", "--json", dsn=db.dsn
    )
    assert forced.exit_code == 0, forced.stderr
    report = json.loads(forced.stdout)
    assert report["moved_in"] == {"deleted": 4, "returned": 0}
    assert report["tables"]["public.patients"]["deleted"] == 1
    assert state(db, tenant) == launched
    assert state(db, source) == before[source]
    assert family(db, pid)["patient"] == []
    # Nothing is lost: the class it came from takes it back with its own rewind.
    rewind(db, source, "mark:launch")
    assert state(db, source) == from_source
    assert family(db, pid) == visitor


def test_forced_rewind_never_changes_the_class_a_row_came_from(seeded_db: Database) -> None:
    """A seeded patient of another class still has rows there (vitals carry
    their own tenant) that point at it: deleting it would break them."""
    db = seeded_db
    tenant, source = rewindkit.tenants(db)[:2]
    pid = str(
        db.sql(
            "SELECT p.id FROM public.patients p WHERE p.tenant_id = %s AND EXISTS"
            " (SELECT 1 FROM public.patient_vitals v WHERE v.patient_id = p.id)"
            " ORDER BY p.patient_id LIMIT 1",
            (source,),
        )[0]["id"]
    )
    mark(db, tenant, "launch")
    move(db, pid, tenant)
    before, log = rewindkit.all_states(db), rewindkit.log_size(db)
    assert rewindkit.rewind_error(db, tenant, "mark:launch") == "55000"
    assert rewindkit.rewind_error(db, tenant, "mark:launch", force=True) == "23503"
    assert rewindkit.all_states(db) == before and rewindkit.log_size(db) == log


def test_text_report_says_what_happened_to_rows_that_moved_in(seeded_db: Database) -> None:
    db = seeded_db
    tenant, source = rewindkit.tenants(db)[:2]
    loose = loose_patient(db, None, "MRN-LOOSE")
    visitor = loose_patient(db, source, "MRN-VISITOR")
    mark(db, tenant, "launch")
    move(db, loose, tenant)
    move(db, visitor, tenant)
    result = run_cli("rewind", "--tenant", tenant, "--to", "mark:launch", "--force", dsn=db.dsn)
    assert result.exit_code == 0, result.stderr
    assert "deleted 4 row(s) that entered from other tenants (--force)" in result.stdout
    assert "returned 4 row(s) that entered from no tenant to no tenant" in result.stdout


def test_compaction_keeps_a_move_in_from_no_tenant(seeded_db: Database) -> None:
    """Compaction folds a row's changes between two ticks; a move in from no
    tenant must still be seen as one afterwards, or the row would be deleted."""
    db = seeded_db
    tenant = rewindkit.tenants(db)[0]
    pid = loose_patient(db, None, "MRN-LOOSE")
    mark(db, tenant, "launch")
    launched, loose = state(db, tenant), family(db, pid)
    db.sql("SELECT simtrail.tick()")
    move(db, pid, tenant)
    db.sql("UPDATE public.patients SET room_number = 'ICU-1' WHERE id = %s", (pid,))
    db.sql("UPDATE public.patients SET room_number = 'ICU-2' WHERE id = %s", (pid,))
    db.sql("UPDATE public.patients SET room_number = 'moved' WHERE tenant_id = %s", (tenant,))
    db.sql("UPDATE public.patients SET room_number = 'again' WHERE tenant_id = %s", (tenant,))
    time.sleep(0.01)
    db.sql("SELECT simtrail.tick()")
    expected = rewind(db, tenant, "mark:launch", dry_run=True)
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        while True:
            row = conn.execute("SELECT simtrail.compact_batch('0', 10000)").fetchone()
            assert row is not None
            if row[0]["done"]:
                break
    assert db.sql("SELECT count(*) AS n FROM simtrail.archive")[0]["n"] > 0
    plan = rewind(db, tenant, "mark:launch", dry_run=True)
    assert plan["moved_in"] == expected["moved_in"] == {"deleted": 0, "returned": 4}
    rewind(db, tenant, "mark:launch")
    assert state(db, tenant) == launched
    assert family(db, pid) == loose


def test_rows_added_while_a_row_had_no_tenant_are_not_dragged_back_in(
    seeded_db: Database,
) -> None:
    """A patient leaves the class for no tenant and gets a handover note while
    it has none. Bringing the patient back would bring the note into the
    class, and the class never had it: refused, forced or not, and named."""
    db = seeded_db
    tenant = rewindkit.tenants(db)[0]
    pid = loose_patient(db, tenant, "MRN-AWAY")
    mark(db, tenant, "launch")
    launched = state(db, tenant)
    move(db, pid, None)
    note = db.sql(
        "INSERT INTO public.handover_notes (patient_id, shift, sbar) VALUES (%s, 'day', '{}')"
        " RETURNING id",
        (pid,),
    )[0]["id"]
    before, log = rewindkit.all_states(db), rewindkit.log_size(db)
    for force in (False, True):
        assert rewindkit.rewind_error(db, tenant, "mark:launch", force=force) == "55000"
    refused = run_cli("rewind", "--tenant", tenant, "--to", "mark:launch", dsn=db.dsn)
    assert refused.exit_code == 3 and str(note) in refused.stderr
    assert "public.handover_notes" in refused.stderr and "no tenant" in refused.stderr
    assert rewindkit.all_states(db) == before and rewindkit.log_size(db) == log
    # Once the note is gone, the patient comes back with what it had.
    db.sql("DELETE FROM public.handover_notes WHERE id = %s", (note,))
    rewind(db, tenant, "mark:launch")
    assert state(db, tenant) == launched


def test_rows_added_after_the_target_that_left_for_no_tenant_are_deleted(
    seeded_db: Database,
) -> None:
    """A wound added after the mark leaves with its patient for no tenant; the
    patient was the class's at the mark and comes back, the wound must not."""
    db = seeded_db
    tenant = rewindkit.tenants(db)[0]
    pid = loose_patient(db, tenant, "MRN-AWAY")
    mark(db, tenant, "launch")
    launched, at_mark = state(db, tenant), family(db, pid)
    db.sql(
        "INSERT INTO public.patient_wounds (patient_id, location, wound_type)"
        " VALUES (%s, 'heel', 'pressure')",
        (pid,),
    )
    move(db, pid, None)
    report = rewind(db, tenant, "mark:launch")
    assert report["tables"]["public.patient_wounds"]["deleted"] == 1
    assert state(db, tenant) == launched
    assert family(db, pid) == at_mark
