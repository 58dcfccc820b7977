"""Invariant I5: every committed change on an enabled table is logged, with the right tenant."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import psycopg

from tests import logcheck
from tests.conftest import Database


def last_id(db: Database) -> int:
    return int(db.sql("SELECT coalesce(max(id), 0) AS id FROM simtrail.changes")[0]["id"])


def changes_since(db: Database, since: int, table: str | None = None) -> list[dict[str, Any]]:
    return db.sql(
        "SELECT * FROM simtrail.simulation_tenant_changes WHERE id > %s"
        " AND (%s::text IS NULL OR table_name = %s) ORDER BY id",
        (since, table, table),
    )


def tenants(db: Database) -> list[str]:
    return [str(r["id"]) for r in db.sql("SELECT id FROM public.tenants ORDER BY name")]


def a_patient(db: Database, tenant: str) -> dict[str, Any]:
    """A patient of `tenant` that has a handover note, a wound with assessments and labs."""
    rows = db.sql(
        """
        SELECT p.id::text, p.patient_id AS mrn FROM public.patients AS p
        WHERE p.tenant_id = %s
          AND EXISTS (SELECT 1 FROM public.handover_notes AS h WHERE h.patient_id = p.id)
          AND EXISTS (SELECT 1 FROM public.patient_wounds AS w
                      JOIN public.wound_assessments AS a ON a.wound_id = w.id
                      WHERE w.patient_id = p.id)
          AND EXISTS (SELECT 1 FROM public.lab_panels AS l
                      JOIN public.lab_results AS r ON r.panel_id = l.id
                      WHERE l.patient_id = p.id)
        ORDER BY p.patient_id LIMIT 1
        """,
        (tenant,),
    )
    assert rows, "the seeded fixture should chart every patient fully"
    return rows[0]


def assert_log_matches_live(db: Database) -> None:
    replayed = logcheck.replay(db)
    assert replayed.problems == []
    live = logcheck.live_state(db)
    for table, rows in live.items():
        assert replayed.state.get(table, {}) == rows, f"replayed {table} differs from live rows"


def test_images_are_exact_copies_of_the_rows(seeded_db: Database) -> None:
    db = seeded_db
    tenant = tenants(db)[0]
    patient = a_patient(db, tenant)["id"]
    since = last_id(db)
    with psycopg.connect(db.dsn, autocommit=True, application_name="charting-app") as conn:
        # By id: the seed may hold vitals with the same values.
        added = conn.execute(
            "INSERT INTO public.patient_vitals (tenant_id, patient_id, temperature, heart_rate,"
            " blood_pressure, recorded_at) VALUES (%s, %s, 38.4, 101, '142/91', now())"
            " RETURNING id",
            (tenant, patient),
        ).fetchone()
        assert added is not None
        conn.execute("UPDATE public.patient_vitals SET heart_rate = 96 WHERE id = %s", added)
        live = conn.execute(
            "SELECT to_jsonb(v), v.id::text FROM public.patient_vitals v WHERE id = %s", added
        ).fetchone()
        assert live is not None
        conn.execute("DELETE FROM public.patient_vitals WHERE id = %s", added)
    insert, update, delete = changes_since(db, since)
    assert [c["operation"] for c in (insert, update, delete)] == ["INSERT", "UPDATE", "DELETE"]
    assert {c["tenant_id"] for c in (insert, update, delete)} == {tenant}
    assert {json.dumps(c["row_pk"]) for c in (insert, update, delete)} == {
        json.dumps({"id": live[1]})
    }
    assert update["new_data"] == live[0] == delete["old_data"]
    assert insert["new_data"] == update["old_data"] == {**live[0], "heart_rate": 101}
    assert insert["old_data"] is None and delete["new_data"] is None
    assert update["actor"]["application_name"] == "charting-app"
    assert update["actor"]["session_user"] == db.sql("SELECT session_user AS u")[0]["u"]
    assert insert["xact_id"] != update["xact_id"] != delete["xact_id"]


def test_cascade_through_tenantless_children_keeps_the_tenant(seeded_db: Database) -> None:
    """The seed's naive trigger logs these with a NULL tenant; simtrail must not."""
    db = seeded_db
    naive = resources.files("tests").joinpath("sql/naive_trigger.sql").read_text()
    db.sql(naive)
    tenant = tenants(db)[1]
    patient = a_patient(db, tenant)["id"]
    children = {
        "public.handover_notes": "SELECT count(*) AS n FROM public.handover_notes"
        " WHERE patient_id = %(p)s",
        "public.patient_wounds": "SELECT count(*) AS n FROM public.patient_wounds"
        " WHERE patient_id = %(p)s",
        "public.wound_assessments": "SELECT count(*) AS n FROM public.wound_assessments a"
        " JOIN public.patient_wounds w ON w.id = a.wound_id WHERE w.patient_id = %(p)s",
        "public.lab_results": "SELECT count(*) AS n FROM public.lab_results r"
        " JOIN public.lab_panels l ON l.id = r.panel_id WHERE l.patient_id = %(p)s",
    }
    before = {t: db.sql(q, {"p": patient})[0]["n"] for t, q in children.items()}
    assert all(n > 0 for n in before.values())
    since = last_id(db)

    db.sql("DELETE FROM public.patients WHERE id = %s", (patient,))

    logged = changes_since(db, since)
    for table, count in before.items():
        rows = [c for c in logged if c["table_name"] == table]
        assert len(rows) == count
        assert {c["operation"] for c in rows} == {"DELETE"}
        assert {c["tenant_id"] for c in rows} == {tenant}, table
    # The naive per-row trigger looks the tenant up through the parent, which
    # the cascade already removed: exactly the failure simtrail exists to fix.
    naive_rows = db.sql(
        "SELECT table_name, tenant_id FROM public.naive_changes"
        " WHERE table_name IN ('handover_notes', 'wound_assessments', 'lab_results')"
    )
    assert naive_rows and {r["tenant_id"] for r in naive_rows} == {None}
    assert_log_matches_live(db)


def test_set_null_cascades_are_captured(seeded_db: Database) -> None:
    db = seeded_db
    t0 = tenants(db)[0]
    user = db.sql(
        "SELECT recorded_by::text AS u FROM public.patient_vitals"
        " WHERE tenant_id = %s AND recorded_by IS NOT NULL LIMIT 1",
        (t0,),
    )[0]["u"]
    affected = db.sql(
        "SELECT count(*) AS n FROM public.patient_vitals WHERE recorded_by = %s", (user,)
    )[0]["n"]
    since = last_id(db)
    db.sql("DELETE FROM public.user_profiles WHERE id = %s", (user,))
    vitals = changes_since(db, since, "public.patient_vitals")
    assert len(vitals) == affected
    assert all(c["operation"] == "UPDATE" and c["tenant_id"] == t0 for c in vitals)
    assert all(c["old_data"]["recorded_by"] == user for c in vitals)
    assert all(c["new_data"]["recorded_by"] is None for c in vitals)

    # Deleting a class nulls patients.tenant_id: its patients, and everything
    # reaching the class through them, leave that class's history.
    patients = db.sql("SELECT count(*) AS n FROM public.patients WHERE tenant_id = %s", (t0,))
    since = last_id(db)
    db.sql("DELETE FROM public.tenants WHERE id = %s", (t0,))
    moved = changes_since(db, since)
    out_patients = [c for c in moved if c["table_name"] == "public.patients"]
    assert len(out_patients) == patients[0]["n"]
    assert {(c["moved"], c["tenant_id"]) for c in out_patients} == {("out", t0)}
    assert {c["table_name"] for c in moved} >= {
        "public.handover_notes",
        "public.patient_wounds",
        "public.wound_assessments",
    }
    assert all(c["moved"] == "out" and c["tenant_id"] == t0 for c in moved)
    assert_log_matches_live(db)


def test_row_moving_to_another_tenant_leaves_one_history_and_enters_the_other(
    seeded_db: Database,
) -> None:
    db = seeded_db
    t0, t1, _ = tenants(db)
    patient = a_patient(db, t0)["id"]
    notes = db.sql("SELECT id::text FROM public.handover_notes WHERE patient_id = %s", (patient,))
    since = last_id(db)
    db.sql("UPDATE public.patients SET tenant_id = %s WHERE id = %s", (t1, patient))
    logged = changes_since(db, since)
    patient_rows = [c for c in logged if c["table_name"] == "public.patients"]
    assert [(c["moved"], c["tenant_id"]) for c in patient_rows] == [("out", t0), ("in", t1)]
    assert all(c["old_data"]["tenant_id"] == t0 for c in patient_rows)
    assert all(c["new_data"]["tenant_id"] == t1 for c in patient_rows)
    # The handover notes have no tenant column: they move with their patient.
    note_rows = [c for c in logged if c["table_name"] == "public.handover_notes"]
    assert sorted((c["row_pk"]["id"], c["moved"], c["tenant_id"]) for c in note_rows) == sorted(
        [(n["id"], "out", t0) for n in notes] + [(n["id"], "in", t1) for n in notes]
    )
    # A row with its own tenant column moves on its own.
    vital = db.sql("SELECT id::text FROM public.patient_vitals WHERE tenant_id = %s LIMIT 1", (t0,))
    since = last_id(db)
    db.sql("UPDATE public.patient_vitals SET tenant_id = %s WHERE id = %s", (t1, vital[0]["id"]))
    assert [(c["moved"], c["tenant_id"]) for c in changes_since(db, since)] == [
        ("out", t0),
        ("in", t1),
    ]
    assert_log_matches_live(db)


def test_primary_key_change_is_logged_with_both_keys(seeded_db: Database) -> None:
    db = seeded_db
    tenant = tenants(db)[2]
    member = db.sql(
        "SELECT patient_id::text, user_id::text FROM public.patient_care_team"
        " WHERE tenant_id = %s LIMIT 1",
        (tenant,),
    )[0]
    other = db.sql(
        "SELECT id::text FROM public.user_profiles WHERE id NOT IN"
        " (SELECT user_id FROM public.patient_care_team WHERE patient_id = %s) LIMIT 1",
        (member["patient_id"],),
    )[0]["id"]
    since = last_id(db)
    db.sql(
        "UPDATE public.patient_care_team SET user_id = %s WHERE patient_id = %s AND user_id = %s",
        (other, member["patient_id"], member["user_id"]),
    )
    (change,) = changes_since(db, since)
    assert change["operation"] == "UPDATE" and change["tenant_id"] == tenant
    assert change["row_pk"] == {"patient_id": member["patient_id"], "user_id": other}
    assert change["old_data"]["user_id"] == member["user_id"]
    assert change["new_data"]["user_id"] == other
    assert_log_matches_live(db)


def test_several_primary_keys_changed_in_one_statement_pair_up(seeded_db: Database) -> None:
    db = seeded_db
    before = db.sql("SELECT to_jsonb(b) AS img FROM public.bowel_records b")
    since = last_id(db)
    db.sql("UPDATE public.bowel_records SET id = gen_random_uuid()")
    changed = changes_since(db, since)
    assert len(changed) == len(before) > 1
    for change in changed:
        old, new = change["old_data"], change["new_data"]
        assert old["id"] != new["id"] == change["row_pk"]["id"]
        # Old and new images of one row must be paired: all else is equal.
        assert {**old, "id": None} == {**new, "id": None}
    assert sorted(json.dumps(c["old_data"], sort_keys=True) for c in changed) == sorted(
        json.dumps(r["img"], sort_keys=True) for r in before
    )
    assert_log_matches_live(db)


def test_truncate_logs_every_row_it_removes(seeded_db: Database) -> None:
    db = seeded_db
    results = db.sql("SELECT count(*) AS n FROM public.lab_results")[0]["n"]
    since = last_id(db)
    db.sql("TRUNCATE public.lab_results")
    logged = changes_since(db, since)
    assert len(logged) == results > 0
    assert {c["operation"] for c in logged} == {"TRUNCATE"}
    assert None not in {c["tenant_id"] for c in logged}
    assert_log_matches_live(db)

    # TRUNCATE … CASCADE reaches every child table; a reference without a
    # foreign key keeps its rows.
    unreached = ("bowel_records", "diabetic_records", "medication_scans", "wound_treatments")
    live_rows = sum(
        db.sql(f"SELECT count(*) AS n FROM {t}")[0]["n"]  # catalog-sourced names
        for t in logcheck.captured_tables(db)
    )
    since = last_id(db)
    db.sql("TRUNCATE public.patients CASCADE")
    cascaded = changes_since(db, since)
    assert len(cascaded) == live_rows - sum(
        db.sql(f"SELECT count(*) AS n FROM public.{t}")[0]["n"] for t in unreached
    )
    assert None not in {c["tenant_id"] for c in cascaded}
    assert_log_matches_live(db)


def test_writes_by_the_application_role_are_captured_with_its_claims(
    seeded_db: Database,
) -> None:
    db = seeded_db
    tenant = tenants(db)[0]
    patient = a_patient(db, tenant)["id"]
    claims = {
        "sub": "5b3c-student",
        "role": "authenticated",
        "email": "ana@uni.example",
        "tenant_id": tenant,
    }
    since = last_id(db)
    with psycopg.connect(db.dsn) as conn:
        conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (json.dumps(claims),))
        conn.execute("SELECT set_config('simtrail.actor', 'bedside tablet 4', true)")
        conn.execute("SET LOCAL ROLE authenticated")
        conn.execute(
            "INSERT INTO public.handover_notes (patient_id, shift, sbar) VALUES (%s, 'night', %s)",
            (patient, json.dumps({"s": "stable overnight"})),
        )
        conn.execute(
            "UPDATE public.patient_notes SET content = content || ' (reviewed)'"
            " WHERE patient_id = %s",
            (patient,),
        )
    logged = changes_since(db, since)
    assert {c["table_name"] for c in logged} == {"public.handover_notes", "public.patient_notes"}
    assert {c["tenant_id"] for c in logged} == {tenant}
    actor = logged[0]["actor"]
    assert actor["sub"] == "5b3c-student"
    assert actor["role"] == "authenticated"
    assert actor["email"] == "ana@uni.example"
    assert actor["actor"] == "bedside tablet 4"
    assert all(c["actor"] == actor for c in logged)


def test_rolled_back_work_leaves_no_trace_and_savepoints_keep_the_actor(
    seeded_db: Database,
) -> None:
    db = seeded_db
    tenant = tenants(db)[0]
    patient = a_patient(db, tenant)["id"]
    since = last_id(db)
    with psycopg.connect(db.dsn) as conn:
        conn.execute("UPDATE public.patients SET room_number = 'X-1' WHERE id = %s", (patient,))
        conn.rollback()
        with conn.transaction():
            # The first captured statement (which registers the transaction)
            # is rolled back to a savepoint; later ones must still carry an actor.
            try:
                with conn.transaction():
                    conn.execute(
                        "UPDATE public.patients SET room_number = 'X-2' WHERE id = %s", (patient,)
                    )
                    raise RuntimeError("student pressed cancel")
            except RuntimeError:
                pass
            conn.execute("UPDATE public.patients SET room_number = 'X-3' WHERE id = %s", (patient,))
    logged = changes_since(db, since)
    assert [c["new_data"]["room_number"] for c in logged] == ["X-3"]
    assert logged[0]["actor"] is not None and "session_user" in logged[0]["actor"]
    assert_log_matches_live(db)


def test_replica_mode_does_not_bypass_capture(seeded_db: Database) -> None:
    db = seeded_db
    since = last_id(db)
    with psycopg.connect(db.dsn) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("UPDATE public.lab_results SET flag = 'C' WHERE flag = 'H'")
        changed = conn.execute("SELECT count(*) FROM public.lab_results WHERE flag = 'C'")
        row = changed.fetchone()
    assert row is not None
    assert len(changes_since(db, since)) > 0
    assert_log_matches_live(db)


def test_large_updates_on_a_pooled_connection_pair_rows_exactly(seeded_db: Database) -> None:
    """Past 64 rows an UPDATE is captured through its own plan, not the cached one."""
    db = seeded_db
    t0, t1, _ = tenants(db)
    patient = a_patient(db, t0)["id"]
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO public.patient_vitals (tenant_id, patient_id, heart_rate, blood_pressure)"
            " SELECT %s, %s, g, 'bulk' FROM generate_series(1, 1000) AS g",
            (t0, patient),
        )
        # Single-row statements first, so the session has cached small plans.
        for _ in range(10):
            conn.execute(
                "UPDATE public.patient_vitals SET pain_score = 1 WHERE id = "
                "(SELECT id FROM public.patient_vitals WHERE tenant_id = %s LIMIT 1)",
                (t0,),
            )
        since = last_id(db)
        conn.execute(
            "UPDATE public.patient_vitals SET id = gen_random_uuid(), heart_rate = heart_rate + 1,"
            " tenant_id = CASE WHEN heart_rate %% 2 = 0 THEN %s::uuid ELSE tenant_id END"
            " WHERE patient_id = %s AND blood_pressure = 'bulk'",
            (t1, patient),
        )
    logged = changes_since(db, since)
    moved = [c for c in logged if c["moved"]]
    assert len(logged) == 1000 + 500  # the moved half is logged out and in
    assert {(c["moved"], c["tenant_id"]) for c in moved} == {("out", t0), ("in", t1)}
    for change in logged:
        assert change["new_data"]["heart_rate"] == change["old_data"]["heart_rate"] + 1
        assert change["old_pk"] == {"id": change["old_data"]["id"]}
    assert_log_matches_live(db)
