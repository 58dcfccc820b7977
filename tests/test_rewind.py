"""Rewind: each hard case of the clinic schema, refusals, bad input and crashes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import psycopg
import pytest

from tests import rewindkit
from tests.conftest import Database, run_cli
from tests.rewindkit import mark, rewind, state


def launch(db: Database, tenant_index: int = 0) -> tuple[str, rewindkit.State]:
    tenant = rewindkit.tenants(db)[tenant_index]
    mark(db, tenant, "launch")
    return tenant, state(db, tenant)


def exact_after(
    db: Database, edit: Callable[[str], object], tenant_index: int = 0
) -> dict[str, int]:
    """Mark launch, edit, rewind to launch: the tenant must be exactly as launched
    and every other tenant as it was before the rewind. Returns the totals."""
    tenant, launched = launch(db, tenant_index)
    edit(tenant)
    edited = rewindkit.all_states(db)
    assert edited[tenant] != launched, "the edit should have changed the tenant"
    report = rewind(db, tenant, "mark:launch")
    assert state(db, tenant) == launched
    for other, other_state in rewindkit.all_states(db).items():
        if other != tenant:
            assert other_state == edited[other]
    totals: dict[str, int] = report["totals"]
    return totals


def patient_of(db: Database, tenant: str) -> str:
    return str(
        db.sql(
            "SELECT p.id FROM public.patients p WHERE p.tenant_id = %s AND EXISTS"
            " (SELECT 1 FROM public.patient_wounds w JOIN public.wound_assessments a"
            "  ON a.wound_id = w.id WHERE w.patient_id = p.id) ORDER BY p.patient_id LIMIT 1",
            (tenant,),
        )[0]["id"]
    )


def test_cascaded_delete_of_a_patient_is_restored_with_every_child(seeded_db: Database) -> None:
    db = seeded_db
    totals = exact_after(
        db, lambda t: db.sql("DELETE FROM public.patients WHERE id = %s", (patient_of(db, t),))
    )
    assert totals["restored"] > 5 and totals["deleted"] == 0


def test_self_reference_and_set_null_on_a_tracked_parent(seeded_db: Database) -> None:
    db = seeded_db

    def supersede_then_delete(tenant: str) -> None:
        order = db.sql(
            "SELECT id FROM public.doctors_orders WHERE tenant_id = %s LIMIT 1", (tenant,)
        )[0]["id"]
        db.sql(
            "INSERT INTO public.doctors_orders (tenant_id, patient_id, order_type, order_text,"
            " supersedes_id) SELECT tenant_id, patient_id, order_type, 'revised', id"
            " FROM public.doctors_orders WHERE id = %s",
            (order,),
        )
        # Deleting the original nulls the new order's supersedes_id (SET NULL).
        db.sql("DELETE FROM public.doctors_orders WHERE id = %s", (order,))

    totals = exact_after(db, supersede_then_delete)
    assert totals["deleted"] == 1 and totals["restored"] == 1


def test_rows_pointing_at_untracked_users_are_restored(seeded_db: Database) -> None:
    db = seeded_db

    def chart(tenant: str) -> None:
        db.sql(
            "UPDATE public.patient_vitals SET recorded_by = (SELECT id FROM public.user_profiles"
            " ORDER BY id LIMIT 1), heart_rate = 130 WHERE tenant_id = %s",
            (tenant,),
        )

    totals = exact_after(db, chart)
    assert totals["reverted"] > 0


def test_restore_refused_when_an_untracked_parent_is_gone(seeded_db: Database) -> None:
    db = seeded_db
    tenant, _ = launch(db)
    user = db.sql(
        "SELECT recorded_by AS u FROM public.patient_vitals WHERE tenant_id = %s"
        " AND recorded_by IS NOT NULL LIMIT 1",
        (tenant,),
    )[0]["u"]
    db.sql(
        "DELETE FROM public.patient_vitals WHERE tenant_id = %s AND recorded_by = %s",
        (tenant, user),
    )
    db.sql("DELETE FROM public.patient_care_team WHERE user_id = %s", (user,))
    db.sql("UPDATE public.patient_vitals SET recorded_by = NULL WHERE recorded_by = %s", (user,))
    db.sql("UPDATE public.patient_notes SET created_by = NULL WHERE created_by = %s", (user,))
    db.sql("UPDATE public.handover_notes SET created_by = NULL WHERE created_by = %s", (user,))
    db.sql(
        "UPDATE public.medication_administrations SET administered_by = NULL"
        " WHERE administered_by = %s",
        (user,),
    )
    db.sql("UPDATE public.wound_assessments SET assessed_by = NULL WHERE assessed_by = %s", (user,))
    db.sql("DELETE FROM public.user_profiles WHERE id = %s", (user,))
    before = rewindkit.all_states(db)
    log = rewindkit.log_size(db)
    # Restoring the vitals would need the deleted (untracked) user back.
    assert rewindkit.rewind_error(db, tenant, "mark:launch") == "23503"
    assert rewindkit.all_states(db) == before
    assert rewindkit.log_size(db) == log


def test_composite_key_identity_and_generated_columns(seeded_db: Database) -> None:
    db = seeded_db

    def edit(tenant: str) -> None:
        member = db.sql(
            "SELECT patient_id, user_id FROM public.patient_care_team WHERE tenant_id = %s LIMIT 1",
            (tenant,),
        )[0]
        db.sql(
            "UPDATE public.patient_care_team SET user_id = (SELECT id FROM public.user_profiles"
            " WHERE id NOT IN (SELECT user_id FROM public.patient_care_team WHERE patient_id = %s)"
            " LIMIT 1) WHERE patient_id = %s AND user_id = %s",
            (member["patient_id"], member["patient_id"], member["user_id"]),
        )
        db.sql("DELETE FROM public.diabetic_records WHERE tenant_id = %s", (tenant,))
        db.sql(
            "INSERT INTO public.diabetic_records (tenant_id, patient_id, glucose_mg_dl)"
            " VALUES (%s, 'MRN-X', 250)",
            (tenant,),
        )
        db.sql("UPDATE public.patients SET first_name = 'Renamed' WHERE tenant_id = %s", (tenant,))

    ids_before = db.sql("SELECT id FROM public.diabetic_records ORDER BY id")
    exact_after(db, edit)
    # The identity ids came back as they were, not as new sequence values.
    assert db.sql("SELECT id FROM public.diabetic_records ORDER BY id") == ids_before
    names = db.sql(
        "SELECT full_name, first_name || ' ' || last_name AS expected FROM public.patients"
    )
    assert all(r["full_name"] == r["expected"] for r in names)


def test_mrn_deleted_and_readmitted_in_one_session(seeded_db: Database) -> None:
    db = seeded_db
    tenant, _ = launch(db)
    original = db.sql(
        "SELECT id, patient_id FROM public.patients WHERE tenant_id = %s ORDER BY patient_id"
        " LIMIT 1",
        (tenant,),
    )[0]
    launched = state(db, tenant)
    db.sql("DELETE FROM public.patients WHERE id = %s", (original["id"],))
    db.sql(
        "INSERT INTO public.patients (tenant_id, patient_id, first_name, last_name,"
        " date_of_birth) VALUES (%s, %s, 'New', 'Admission', '1970-01-01')",
        (tenant, original["patient_id"]),
    )
    rewind(db, tenant, "mark:launch")
    assert state(db, tenant) == launched
    row = db.sql(
        "SELECT id FROM public.patients WHERE tenant_id = %s AND patient_id = %s",
        (tenant, original["patient_id"]),
    )
    assert row == [{"id": original["id"]}]  # the barcode id is back


def test_arrays_jsonb_and_enums_are_reverted(seeded_db: Database) -> None:
    db = seeded_db

    def edit(tenant: str) -> None:
        db.sql(
            "UPDATE public.patients SET allergies = allergies || '{penicillin,\"sulfa, mild\"}',"
            ' admission_details = admission_details || \'{"isolation": ["contact"]}\','
            " acuity = 'critical' WHERE tenant_id = %s",
            (tenant,),
        )
        db.sql(
            "UPDATE public.patient_medications SET administration_times = '{06:00,18:00}',"
            " status = 'held' WHERE tenant_id = %s",
            (tenant,),
        )

    totals = exact_after(db, edit)
    assert totals["reverted"] > 0 and totals["restored"] == totals["deleted"] == 0


def test_columns_added_or_dropped_after_capture(seeded_db: Database) -> None:
    db = seeded_db
    tenant, _ = launch(db)
    db.sql(
        "DELETE FROM public.lab_results WHERE panel_id IN"
        " (SELECT id FROM public.lab_panels WHERE tenant_id = %s)",
        (tenant,),
    )
    db.sql("UPDATE public.patient_vitals SET heart_rate = 1 WHERE tenant_id = %s", (tenant,))
    db.sql("ALTER TABLE public.lab_results ADD COLUMN verified boolean NOT NULL DEFAULT true")
    db.sql("ALTER TABLE public.patient_vitals ADD COLUMN device text DEFAULT 'monitor-1'")
    db.sql("UPDATE public.patient_vitals SET device = 'kept' WHERE tenant_id = %s", (tenant,))
    db.sql("ALTER TABLE public.patient_vitals DROP COLUMN respiratory_rate")
    rewind(db, tenant, "mark:launch")
    results = db.sql(
        "SELECT count(*) AS n, bool_and(verified) AS defaulted FROM public.lab_results r"
        " JOIN public.lab_panels l ON l.id = r.panel_id WHERE l.tenant_id = %s",
        (tenant,),
    )[0]
    assert results["n"] > 0 and results["defaulted"] is True  # restored rows take the default
    vitals = db.sql(
        "SELECT bool_and(device = 'kept') AS kept, bool_and(heart_rate <> 1) AS reverted"
        " FROM public.patient_vitals WHERE tenant_id = %s",
        (tenant,),
    )[0]
    assert vitals == {"kept": True, "reverted": True}  # new column keeps its live value


def test_user_triggers_do_not_alter_restored_rows(seeded_db: Database) -> None:
    db = seeded_db
    tenant, launched = launch(db)
    stamps = db.sql(
        "SELECT id, updated_at FROM public.patient_notes WHERE tenant_id = %s ORDER BY id",
        (tenant,),
    )
    db.sql("UPDATE public.patient_notes SET content = 'edited' WHERE tenant_id = %s", (tenant,))
    db.sql("DELETE FROM public.patient_notes WHERE tenant_id = %s", (tenant,))
    rewind(db, tenant, "mark:launch")
    assert state(db, tenant) == launched
    assert (
        db.sql(
            "SELECT id, updated_at FROM public.patient_notes WHERE tenant_id = %s ORDER BY id",
            (tenant,),
        )
        == stamps
    )


def test_cross_tenant_move_is_refused_even_with_force(seeded_db: Database) -> None:
    db = seeded_db
    tenant, _ = launch(db)
    other = rewindkit.tenants(db)[1]
    db.sql(
        "UPDATE public.patients SET tenant_id = %s WHERE id = %s", (other, patient_of(db, tenant))
    )
    before = rewindkit.all_states(db)
    log = rewindkit.log_size(db)
    assert rewindkit.rewind_error(db, tenant, "mark:launch") == "55000"
    assert rewindkit.rewind_error(db, tenant, "mark:launch", force=True) == "55000"
    assert rewindkit.all_states(db) == before and rewindkit.log_size(db) == log
    refused = run_cli("rewind", "--tenant", tenant, "--to", "mark:launch", "--force", dsn=db.dsn)
    assert refused.exit_code == 3
    assert "left tenant" in refused.stderr and "public.patients" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_drift_is_refused_and_reported_unless_forced(seeded_db: Database) -> None:
    db = seeded_db
    tenant, launched = launch(db)
    vital = db.sql("SELECT id FROM public.patient_vitals WHERE tenant_id = %s LIMIT 1", (tenant,))[
        0
    ]["id"]
    db.sql("UPDATE public.patient_vitals SET heart_rate = 77 WHERE id = %s", (vital,))
    with psycopg.connect(db.dsn) as conn:
        conn.execute("ALTER TABLE public.patient_vitals DISABLE TRIGGER simtrail_capture_update")
        conn.execute("UPDATE public.patient_vitals SET heart_rate = 99 WHERE id = %s", (vital,))
        conn.execute(
            "ALTER TABLE public.patient_vitals ENABLE ALWAYS TRIGGER simtrail_capture_update"
        )
    drifted = state(db, tenant)
    result = run_cli("rewind", "--tenant", tenant, "--to", "mark:launch", dsn=db.dsn)
    assert result.exit_code == 3
    assert "differ from their last logged image" in result.stderr and str(vital) in result.stderr
    assert state(db, tenant) == drifted
    forced = run_cli(
        "rewind", "--tenant", tenant, "--to", "mark:launch", "--force", "--json", dsn=db.dsn
    )
    assert forced.exit_code == 0, forced.stderr
    assert json.loads(forced.stdout)["rows_drifted"] == 1
    assert state(db, tenant) == launched


@pytest.mark.parametrize(
    ("tenant", "target", "message"),
    [
        ("00000000-0000-0000-0000-000000000000", "mark:launch", "unknown tenant"),
        ("not-a-uuid", "mark:launch", "not a valid uuid"),
        (None, "mark:nope", "has no mark 'nope'"),
        (None, "half past nine", "is not a target"),
        (None, "2999-01-01T00:00:00Z", "in the future"),
        (None, "2001-01-01T00:00:00Z", "before the log begins"),
        (None, "change:999999999", "is not in the history"),
        (None, "change:12abc", "is not a change id"),
    ],
)
def test_bad_targets_change_nothing(
    seeded_db: Database, tenant: str | None, target: str, message: str
) -> None:
    db = seeded_db
    real, _ = launch(db)
    db.sql("DELETE FROM public.patient_vitals WHERE tenant_id = %s", (real,))
    before = rewindkit.all_states(db)
    log = rewindkit.log_size(db)
    result = run_cli("rewind", "--tenant", tenant or real, "--to", target, dsn=db.dsn)
    assert result.exit_code == 2
    assert result.stderr.startswith("simtrail: error:") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert rewindkit.all_states(db) == before and rewindkit.log_size(db) == log
    assert db.sql("SELECT count(*) AS n FROM simtrail.rewinds")[0]["n"] == 0


def test_dry_run_prints_the_plan_and_changes_nothing(seeded_db: Database) -> None:
    db = seeded_db
    tenant, _ = launch(db)
    db.sql("DELETE FROM public.patients WHERE id = %s", (patient_of(db, tenant),))
    db.sql("UPDATE public.patient_notes SET content = 'x' WHERE tenant_id = %s", (tenant,))
    before = rewindkit.all_states(db)
    log = rewindkit.log_size(db)
    dry = run_cli(
        "rewind", "--tenant", tenant, "--to", "mark:launch", "--dry-run", "--json", dsn=db.dsn
    )
    assert dry.exit_code == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert rewindkit.all_states(db) == before and rewindkit.log_size(db) == log
    real = run_cli("rewind", "--tenant", tenant, "--to", "mark:launch", "--json", dsn=db.dsn)
    done = json.loads(real.stdout)
    assert plan["tables"] == done["tables"] and plan["totals"] == done["totals"]
    assert done["duration_ms"] > 0 and done["rewind_id"] is not None and not done["dry_run"]
    human = run_cli("reset", "--tenant", tenant, "--dry-run", dsn=db.dsn)
    assert "dry run: nothing was changed" in human.stdout


def test_change_and_time_targets(seeded_db: Database) -> None:
    db = seeded_db
    tenant = rewindkit.tenants(db)[0]
    at_start = state(db, tenant)
    # The seeding came before the cut: only a tick there places the time.
    boundary, cut = rewindkit.exact_targets(db, tenant)
    db.sql("UPDATE public.patients SET room_number = 'Z' WHERE tenant_id = %s", (tenant,))
    db.sql("DELETE FROM public.lab_panels WHERE tenant_id = %s", (tenant,))
    rewind(db, tenant, cut.isoformat())
    assert state(db, tenant) == at_start
    db.sql("UPDATE public.patients SET room_number = 'Y' WHERE tenant_id = %s", (tenant,))
    report = rewind(db, tenant, f"change:{boundary}")
    assert report["resolved"]["kind"] == "change"
    assert state(db, tenant) == at_start


def test_rewind_of_a_killed_backend_leaves_the_tenant_as_before(seeded_db: Database) -> None:
    db = seeded_db
    tenant, _ = launch(db)
    db.sql("DELETE FROM public.patients WHERE tenant_id = %s", (tenant,))
    before = rewindkit.all_states(db)
    log = rewindkit.log_size(db)
    # An ALWAYS trigger that sleeps holds the rewind mid-apply, after some
    # tables are already written, long enough to kill its backend there.
    db.sql(
        "CREATE FUNCTION public.slow() RETURNS trigger LANGUAGE plpgsql AS"
        " $$BEGIN PERFORM pg_sleep(30); RETURN NEW; END$$;"
        " CREATE TRIGGER slow BEFORE INSERT ON public.lab_results FOR EACH ROW"
        " EXECUTE FUNCTION public.slow();"
        " ALTER TABLE public.lab_results ENABLE ALWAYS TRIGGER slow;"
    )
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with psycopg.connect(db.dsn, application_name="doomed rewind") as conn:
                conn.execute("SELECT simtrail.rewind(%s, 'mark:launch', false)", (tenant,))
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    for _ in range(200):
        sleeping = db.sql(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'doomed rewind'"
            " AND wait_event = 'PgSleep'"
        )
        if sleeping:
            break
        time.sleep(0.05)
    assert sleeping, "the rewind never reached the sleeping trigger"
    written = db.sql("SELECT count(*) AS n FROM public.patients WHERE tenant_id = %s", (tenant,))
    assert written[0]["n"] == 0  # not visible: nothing committed yet
    db.sql("SELECT pg_terminate_backend(%s)", (sleeping[0]["pid"],))
    worker.join(10)
    assert errors and isinstance(errors[0], psycopg.OperationalError)
    db.sql("DROP TRIGGER slow ON public.lab_results")
    assert rewindkit.all_states(db) == before
    assert rewindkit.log_size(db) == log
