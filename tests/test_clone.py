"""Clone (launch a class) and copy (duplicate a patient) on the clinic fixture:
exact copies, resets of clones, states at a target, every refusal with
nothing written, and who may call them."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
import pytest

from tests import copykit, rewindkit
from tests.conftest import Database, run_cli
from tests.rewindkit import mark, rewind, state


def new_tenant(db: Database, name: str = "new class") -> str:
    tenant = str(uuid.uuid4())
    db.sql("INSERT INTO public.tenants (id, name) VALUES (%s, %s)", (tenant, name))
    return tenant


def clone(
    db: Database, source: str, target: str, at: str | None = None, **kw: Any
) -> dict[str, Any]:
    rows = db.sql(
        "SELECT simtrail.clone_tenant(%s, %s, %s, %s, %s) AS r",
        (source, target, at, kw.get("dry_run", False), kw.get("mark")),
    )
    report: dict[str, Any] = rows[0]["r"]
    return report


def refused(db: Database, query: str, params: tuple[Any, ...]) -> tuple[str, str]:
    """(SQLSTATE, message) of a call that must fail, and prove it wrote nothing."""
    before = copykit.counts(db)
    states = rewindkit.all_states(db)
    with pytest.raises(psycopg.Error) as info:
        db.sql(query, params)
    assert copykit.counts(db) == before
    assert rewindkit.all_states(db) == states
    assert info.value.sqlstate is not None
    return info.value.sqlstate, info.value.diag.message_primary or ""


def test_clone_copies_every_row_with_new_keys_and_references_inside_the_clone(
    seeded_db: Database,
) -> None:
    db = seeded_db
    source, other = rewindkit.tenants(db)[:2]
    target = new_tenant(db)
    before = rewindkit.all_states(db)
    report = clone(db, source, target)

    assert copykit.content(db, target) == copykit.content(db, source)
    assert copykit.shape(db, target) == copykit.shape(db, source)
    assert copykit.keys_shared(db, source, target) == 0
    total = sum(n for n, _ in state(db, source).values())
    assert report["totals"]["rows"] == total
    assert (
        int(
            db.sql(
                "SELECT count(*) AS n FROM simtrail.copy_keys WHERE copy_id = %s",
                (report["copy_id"],),
            )[0]["n"]
        )
        == total
    )
    for tenant in (source, other):
        assert state(db, tenant) == before[tenant]
    # Ids printed on barcodes: none of the source's changed.
    assert report["mark"] == "launch"


def test_a_clone_edited_and_reset_is_the_clone_again(seeded_db: Database) -> None:
    db = seeded_db
    source = rewindkit.tenants(db)[0]
    target = new_tenant(db)
    clone(db, source, target)
    launched = state(db, target)
    patient = db.sql("SELECT id FROM public.patients WHERE tenant_id = %s LIMIT 1", (target,))[0]
    db.sql("DELETE FROM public.patients WHERE id = %s", (patient["id"],))
    db.sql(
        "UPDATE public.lab_results SET value = value + 1 WHERE panel_id IN"
        " (SELECT id FROM public.lab_panels WHERE tenant_id = %s)",
        (target,),
    )
    assert state(db, target) != launched
    rewind(db, target, "mark:launch")
    assert state(db, target) == launched


def test_clone_at_a_mark_copies_the_state_then_and_leaves_the_source_alone(
    seeded_db: Database,
) -> None:
    db = seeded_db
    source = rewindkit.tenants(db)[0]
    then = new_tenant(db, "copy made at the mark")
    mark(db, source, "before")
    clone(db, source, then)
    expected = copykit.content(db, then)
    db.sql(
        "DELETE FROM public.patients WHERE id IN (SELECT id FROM public.patients"
        " WHERE tenant_id = %s ORDER BY patient_id LIMIT 1)",
        (source,),
    )
    db.sql("UPDATE public.patient_notes SET content = 'rewritten' WHERE tenant_id = %s", (source,))
    edited = state(db, source)
    later = new_tenant(db, "copy of the mark, made later")
    report = clone(db, source, later, "mark:before")
    assert report["source"]["resolved"]["precision"].startswith("exact")
    assert copykit.content(db, later) == expected
    assert state(db, source) == edited


def test_clone_dry_run_reports_and_writes_nothing(seeded_db: Database) -> None:
    db = seeded_db
    source = rewindkit.tenants(db)[0]
    target = new_tenant(db)
    before = copykit.counts(db)
    report = clone(db, source, target, dry_run=True)
    assert report["dry_run"] is True and report["copy_id"] is None
    assert report["totals"]["rows"] == sum(n for n, _ in state(db, source).values())
    assert copykit.counts(db) == before


def test_clone_refuses_an_unknown_source(seeded_db: Database) -> None:
    code, message = refused(
        seeded_db,
        "SELECT simtrail.clone_tenant(%s, %s)",
        (str(uuid.uuid4()), new_tenant(seeded_db)),
    )
    assert code == "22023" and "unknown tenant" in message


def test_clone_refuses_a_target_with_rows(seeded_db: Database) -> None:
    a, b = rewindkit.tenants(seeded_db)[:2]
    code, message = refused(seeded_db, "SELECT simtrail.clone_tenant(%s, %s)", (a, b))
    assert code == "55000" and "already has rows in public." in message


def test_clone_refuses_a_target_the_tenants_table_does_not_have(seeded_db: Database) -> None:
    source = rewindkit.tenants(seeded_db)[0]
    code, message = refused(
        seeded_db, "SELECT simtrail.clone_tenant(%s, %s)", (source, str(uuid.uuid4()))
    )
    assert code == "22023" and "public.tenants" in message


def test_clone_refuses_a_unique_column_without_a_rule_and_names_it(seeded_db: Database) -> None:
    db = seeded_db
    db.sql("ALTER TABLE public.patient_notes ADD COLUMN note_code text UNIQUE")
    source = rewindkit.tenants(db)[0]
    target = new_tenant(db)
    code, message = refused(db, "SELECT simtrail.clone_tenant(%s, %s)", (source, target))
    assert code == "55000"
    assert "public.patient_notes.note_code is unique" in message
    assert "config rule set public.patient_notes.note_code" in message


def test_a_unique_column_with_a_default_takes_it(seeded_db: Database) -> None:
    db = seeded_db
    db.sql(
        "ALTER TABLE public.patient_notes"
        " ADD COLUMN note_code uuid UNIQUE DEFAULT gen_random_uuid()"
    )
    source = rewindkit.tenants(db)[0]
    target = new_tenant(db)
    report = clone(db, source, target)
    assert report["tables"]["public.patient_notes"]["values_generated"]["note_code"] > 0
    shared = db.sql(
        "SELECT count(*) AS n FROM public.patient_notes a JOIN public.patient_notes b"
        " ON a.note_code = b.note_code AND a.id <> b.id"
    )
    assert shared[0]["n"] == 0


def test_a_rule_that_keeps_colliding_refuses_after_bounded_retries(seeded_db: Database) -> None:
    db = seeded_db
    db.sql("ALTER TABLE public.patient_notes ADD COLUMN note_code text UNIQUE")
    db.sql("UPDATE public.patient_notes SET note_code = 'N' || id")
    # Two values for many rows: the copies collide with each other every round.
    db.sql(
        "INSERT INTO simtrail.copy_rules (table_name, column_name, rule, expression)"
        " VALUES ('public.patient_notes', 'note_code', 'sql', '''C'' || (random() < 0.5)::text')"
    )
    source = rewindkit.tenants(db)[0]
    code, message = refused(db, "SELECT simtrail.clone_tenant(%s, %s)", (source, new_tenant(db)))
    assert code == "23505" and "still collided" in message and "10 tries" in message


def test_a_generated_value_that_collides_once_is_generated_again(seeded_db: Database) -> None:
    db = seeded_db
    db.sql("ALTER TABLE public.patient_notes ADD COLUMN note_code integer UNIQUE")
    db.sql(
        "UPDATE public.patient_notes SET note_code = n FROM (SELECT id, row_number() OVER ()"
        " AS n FROM public.patient_notes) AS x WHERE x.id = patient_notes.id"
    )
    biggest = db.sql("SELECT max(note_code) AS m FROM public.patient_notes")[0]["m"]
    # A sequence that starts three below the largest code: the first round's
    # first three values are taken, and their second round draws free ones.
    db.sql(f"CREATE SEQUENCE public.note_codes START {biggest - 2}")
    db.sql(
        "INSERT INTO simtrail.copy_rules (table_name, column_name, rule, expression)"
        " VALUES ('public.patient_notes', 'note_code', 'sql', %s)",
        ("nextval('public.note_codes')::integer",),
    )
    source = rewindkit.tenants(db)[0]
    report = clone(db, source, new_tenant(db))
    assert report["tables"]["public.patient_notes"]["collisions_retried"] == 3
    dupes = db.sql("SELECT note_code FROM public.patient_notes GROUP BY 1 HAVING count(*) > 1")
    assert dupes == []


def test_copy_refuses_a_reference_that_would_still_point_into_the_source(
    seeded_db: Database,
) -> None:
    db = seeded_db
    source, other = rewindkit.tenants(db)[:2]
    first, second = (
        r["id"]
        for r in db.sql(
            "SELECT id FROM public.patients WHERE tenant_id = %s ORDER BY patient_id LIMIT 2",
            (source,),
        )
    )
    # An order of the second patient supersedes one of the first: copying the
    # first's subtree brings that order along, still pointing at the second.
    db.sql(
        "UPDATE public.doctors_orders SET supersedes_id = (SELECT id FROM public.doctors_orders"
        " WHERE patient_id = %s LIMIT 1) WHERE id = (SELECT id FROM public.doctors_orders"
        " WHERE patient_id = %s LIMIT 1)",
        (first, second),
    )
    db.sql("UPDATE public.doctors_orders SET supersedes_id = NULL WHERE patient_id = %s", (first,))
    code, message = refused(
        db,
        "SELECT simtrail.copy_subtree('patients', %s, %s)",
        (json.dumps({"id": str(first)}), other),
    )
    assert code == "23503" and "still point into tenant" in message


def test_copy_duplicates_a_patient_into_another_class(seeded_db: Database) -> None:
    db = seeded_db
    source, other = rewindkit.tenants(db)[:2]
    patient = db.sql(
        "SELECT id FROM public.patients WHERE tenant_id = %s ORDER BY patient_id LIMIT 1", (source,)
    )[0]["id"]
    db.sql("UPDATE public.doctors_orders SET supersedes_id = NULL WHERE tenant_id = %s", (source,))
    before = rewindkit.all_states(db)
    other_patients = int(
        db.sql("SELECT count(*) AS n FROM public.patients WHERE tenant_id = %s", (other,))[0]["n"]
    )
    report = db.sql(
        "SELECT simtrail.copy_subtree('patients', %s, %s) AS r",
        (json.dumps({"id": str(patient)}), other),
    )[0]["r"]
    new_id = report["new_key"]["id"]
    assert new_id != str(patient)
    assert state(db, source) == before[source]
    copied = db.sql("SELECT count(*) AS n FROM public.patients WHERE tenant_id = %s", (other,))
    assert copied[0]["n"] == other_patients + 1
    for table in ("patient_vitals", "patient_medications", "lab_panels", "patient_notes"):
        old = db.sql(f"SELECT count(*) AS n FROM public.{table} WHERE patient_id = %s", (patient,))
        new = db.sql(
            f"SELECT count(*) AS n, count(*) FILTER (WHERE tenant_id = %s) AS t"
            f" FROM public.{table} WHERE patient_id = %s",
            (other, new_id),
        )
        assert new[0]["n"] == old[0]["n"] == new[0]["t"]
    # The medication scans of the copy point at the copy's medications.
    leaked = db.sql(
        "SELECT count(*) AS n FROM public.medication_administrations a"
        " JOIN public.patient_medications m ON m.id = a.medication_id"
        " WHERE a.patient_id = %s AND m.patient_id <> a.patient_id",
        (new_id,),
    )
    assert leaked[0]["n"] == 0


def test_app_roles_cannot_clone_copy_or_read_the_key_maps(seeded_db: Database) -> None:
    db = seeded_db
    source = rewindkit.tenants(db)[0]
    claims = json.dumps({"sub": str(uuid.uuid4()), "role": "authenticated", "tenant_id": source})
    for role in ("authenticated", "anon"):
        for query in (
            f"SELECT simtrail.clone_tenant('{source}', '{uuid.uuid4()}')",
            "SELECT simtrail.copy_subtree('patients', '{}', 'x')",
            "SELECT * FROM simtrail.copy_keys",
            "INSERT INTO simtrail.copies (kind, target_tenant) VALUES ('clone', 'x')",
        ):
            with psycopg.connect(db.dsn) as conn:
                conn.execute(f"SET ROLE {role}")
                conn.execute("SELECT set_config('request.jwt.claims', %s, false)", (claims,))
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(query)


def test_cli_clone_and_copy(seeded_db: Database) -> None:
    db = seeded_db
    source, other = rewindkit.tenants(db)[:2]
    target = new_tenant(db)
    done = run_cli("clone", "--from", source, "--to", target, dsn=db.dsn)
    assert done.exit_code == 0, done.stderr
    assert f"to tenant {target}" in done.stdout and "marked launch" in done.stdout
    again = run_cli("clone", "--from", source, "--to", target, dsn=db.dsn)
    assert again.exit_code == 3
    assert again.stderr.count("\n") == 1 and "already has rows" in again.stderr
    bad_key = run_cli(
        "copy", "--table", "patients", "--key", "{nope", "--to-tenant", other, dsn=db.dsn
    )
    assert bad_key.exit_code == 2 and "--key is not JSON" in bad_key.stderr
    no_row = run_cli(
        "copy",
        "--table",
        "patients",
        "--key",
        json.dumps({"id": str(uuid.uuid4())}),
        "--to-tenant",
        other,
        dsn=db.dsn,
    )
    assert no_row.exit_code == 2 and "has no row with key" in no_row.stderr
    no_table = run_cli(
        "copy", "--table", "nope", "--key", '{"id": 1}', "--to-tenant", other, dsn=db.dsn
    )
    assert no_table.exit_code == 2 and "not captured" in no_table.stderr


def test_a_child_reached_by_the_config_path_alone_follows_its_copied_parent(
    seeded_db: Database,
) -> None:
    db = seeded_db
    db.sql(
        "CREATE TABLE public.vital_notes (id uuid PRIMARY KEY DEFAULT gen_random_uuid(),"
        " vital_id uuid NOT NULL, note text)"
    )
    added = run_cli(
        "config",
        "add",
        "vital_notes",
        "--parent",
        "patient_vitals",
        "--parent-column",
        "vital_id",
        dsn=db.dsn,
    )
    assert added.exit_code == 0, added.stderr
    source = rewindkit.tenants(db)[0]
    db.sql(
        "INSERT INTO public.vital_notes (vital_id, note) SELECT id, 'checked'"
        " FROM public.patient_vitals WHERE tenant_id = %s",
        (source,),
    )
    before = state(db, source)
    target = new_tenant(db)
    clone(db, source, target)
    assert state(db, source) == before
    assert state(db, target)["public.vital_notes"][0] == before["public.vital_notes"][0] > 0
    assert copykit.shape(db, target) == copykit.shape(db, source)
