"""diff: what a class did since a target (rows inserted, deleted, changed, and
their columns), and a clone against its template through the clone's key map.
Both are reads: nothing is written and no row is locked."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from simtrail.triggers import diffing
from tests import copykit, rewindkit
from tests.conftest import Database, run_cli
from tests.rewindkit import mark


def diff_cli(db: Database, tenant: str, *args: str) -> dict[str, Any]:
    result = run_cli("diff", "--tenant", tenant, "--json", *args, dsn=db.dsn)
    assert result.exit_code == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout, parse_float=Decimal)
    return report


def one(db: Database, query: str, params: tuple[Any, ...] = ()) -> Any:
    rows = db.sql(query, params)
    assert len(rows) == 1
    return next(iter(rows[0].values()))


def written(db: Database) -> tuple[Any, ...]:
    work = one(db, "SELECT count(*) FROM simtrail.rewind_net")
    return rewindkit.all_states(db), copykit.counts(db), work


def keys(report: dict[str, Any], kind: str) -> set[tuple[str, str]]:
    return {(r["table"], json.dumps(r["key"], sort_keys=True)) for r in report[kind]}


def key(value: Any) -> str:
    return json.dumps({"id": value}, sort_keys=True)


def session(db: Database, tenant: str) -> dict[str, Any]:
    """A scripted student session; returns the rows it touched."""
    patient = one(
        db,
        "SELECT id::text FROM public.patients WHERE tenant_id = %s ORDER BY id LIMIT 1",
        (tenant,),
    )
    room, diagnosis = db.sql(
        "SELECT room_number, diagnosis FROM public.patients WHERE id = %s", (patient,)
    )[0].values()
    db.sql(
        "UPDATE public.patients SET room_number = 'ICU-1', diagnosis = 'Sepsis' WHERE id = %s",
        (patient,),
    )
    note = one(
        db,
        "DELETE FROM public.patient_notes WHERE id = (SELECT id FROM"
        " public.patient_notes WHERE tenant_id = %s ORDER BY id LIMIT 1) RETURNING id::text",
        (tenant,),
    )
    vital = one(
        db,
        "INSERT INTO public.patient_vitals (tenant_id, patient_id, heart_rate)"
        " VALUES (%s, %s, 120) RETURNING id::text",
        (tenant, patient),
    )
    glucose = one(
        db,
        "INSERT INTO public.diabetic_records (tenant_id, patient_id, glucose_mg_dl)"
        " VALUES (%s, 'MRN-1', 140) RETURNING id",
        (tenant,),
    )
    # Tenant-less rows: a lab result (through its panel), a wound assessment (two hops).
    result, value = db.sql(
        "UPDATE public.lab_results SET value = value + 1 WHERE id = (SELECT r.id FROM"
        " public.lab_results AS r JOIN public.lab_panels AS p ON p.id = r.panel_id"
        " WHERE p.tenant_id = %s ORDER BY r.id LIMIT 1) RETURNING id::text, value",
        (tenant,),
    )[0].values()
    assessment = one(
        db,
        "DELETE FROM public.wound_assessments WHERE id = (SELECT a.id FROM"
        " public.wound_assessments AS a JOIN public.patient_wounds AS w"
        " ON w.id = a.wound_id JOIN public.patients AS p ON p.id = w.patient_id"
        " WHERE p.tenant_id = %s ORDER BY a.id LIMIT 1) RETURNING id::text",
        (tenant,),
    )
    # Undone within the session: not in the diff.
    db.sql(
        "UPDATE public.patient_vitals SET heart_rate = heart_rate + 1 WHERE id = (SELECT id FROM"
        " public.patient_vitals WHERE tenant_id = %s AND id <> %s ORDER BY id LIMIT 1)",
        (tenant, vital),
    )
    db.sql(
        "UPDATE public.patient_vitals SET heart_rate = heart_rate - 1 WHERE id = (SELECT id FROM"
        " public.patient_vitals WHERE tenant_id = %s AND id <> %s ORDER BY id LIMIT 1)",
        (tenant, vital),
    )
    brief = one(
        db,
        "INSERT INTO public.bowel_records (tenant_id, patient_id) VALUES (%s, 'MRN-1')"
        " RETURNING id::text",
        (tenant,),
    )
    db.sql("DELETE FROM public.bowel_records WHERE id = %s", (brief,))
    return {
        "patient": patient,
        "room": room,
        "diagnosis": diagnosis,
        "note": note,
        "vital": vital,
        "glucose": glucose,
        "result": result,
        "value": value,
        "assessment": assessment,
    }


def test_diff_since_a_mark_reports_exactly_what_the_session_did(seeded_db: Database) -> None:
    db = seeded_db
    tenant, other = rewindkit.tenants(db)[:2]
    mark(db, tenant, "launch")
    s = session(db, tenant)
    db.sql("UPDATE public.patients SET diagnosis = 'other class' WHERE tenant_id = %s", (other,))
    before = written(db)

    report = diff_cli(db, tenant, "--to", "mark:launch")

    assert report["tables"] == {
        "public.patients": {"inserted": 0, "deleted": 0, "changed": 1},
        "public.patient_notes": {"inserted": 0, "deleted": 1, "changed": 0},
        "public.patient_vitals": {"inserted": 1, "deleted": 0, "changed": 0},
        "public.diabetic_records": {"inserted": 1, "deleted": 0, "changed": 0},
        "public.lab_results": {"inserted": 0, "deleted": 0, "changed": 1},
        "public.wound_assessments": {"inserted": 0, "deleted": 1, "changed": 0},
    }
    assert report["totals"] == {"inserted": 2, "deleted": 2, "changed": 2}
    assert keys(report, "inserted") == {
        ("public.patient_vitals", key(s["vital"])),
        ("public.diabetic_records", key(s["glucose"])),
    }
    assert keys(report, "deleted") == {
        ("public.patient_notes", key(s["note"])),
        ("public.wound_assessments", key(s["assessment"])),
    }
    changed = {r["table"]: r for r in report["changed"]}
    assert changed["public.patients"]["key"] == {"id": s["patient"]}
    columns = changed["public.patients"]["columns"]
    # updated_at: the application's own stamp trigger, part of what happened.
    assert set(columns) == {"room_number", "diagnosis", "updated_at"}
    assert columns["room_number"] == {"before": s["room"], "after": "ICU-1"}
    assert columns["diagnosis"] == {"before": s["diagnosis"], "after": "Sepsis"}
    assert changed["public.lab_results"]["columns"] == {
        "value": {"before": s["value"] - 1, "after": s["value"]}
    }
    inserted = {r["table"]: r for r in report["inserted"]}
    assert inserted["public.patient_vitals"]["row"]["heart_rate"] == 120
    deleted = {r["table"]: r for r in report["deleted"]}
    assert deleted["public.patient_notes"]["row"]["id"] == s["note"]
    assert report["precision"] == "exact: mark snapshot"
    assert report["capture_gaps"] == []
    assert written(db) == before

    text = run_cli("diff", "--tenant", tenant, "--to", "mark:launch", dsn=db.dsn)
    assert text.exit_code == 0, text.stderr
    lines = text.stdout.splitlines()
    assert any(line.split() == ["public.patients", "0", "0", "1"] for line in lines)
    assert f"      room_number: {s['room']} → ICU-1" in lines
    assert "      diagnosis: " + s["diagnosis"] + " → Sepsis" in lines
    assert f'  public.patient_notes {{"id": "{s["note"]}"}}' in lines
    assert written(db) == before


def test_rows_that_moved_count_as_deleted_and_inserted(seeded_db: Database) -> None:
    db = seeded_db
    tenant, other = rewindkit.tenants(db)[:2]
    mark(db, tenant, "launch")
    mark(db, other, "launch")
    patient = one(
        db,
        "SELECT id::text FROM public.patients WHERE tenant_id = %s ORDER BY id LIMIT 1",
        (tenant,),
    )
    db.sql("UPDATE public.patients SET tenant_id = %s WHERE id = %s", (other, patient))

    left = diff_cli(db, tenant, "--to", "mark:launch")
    came = diff_cli(db, other, "--to", "mark:launch")

    gone = {r["table"]: r for r in left["deleted"] if r["table"] == "public.patients"}
    assert gone["public.patients"]["key"] == {"id": patient}
    assert gone["public.patients"]["moved_to"] == other
    # Its tenant-less children went with it.
    assert {r["table"] for r in left["deleted"]} >= {
        "public.handover_notes",
        "public.patient_wounds",
    }
    assert all(r["moved_to"] == other for r in left["deleted"])
    assert keys(came, "inserted") == keys(left, "deleted")
    assert all(r["moved_from"] == tenant for r in came["inserted"])
    assert left["changed"] == came["changed"] == []


def test_diff_locks_no_row_of_the_tenant(seeded_db: Database) -> None:
    db = seeded_db
    tenant = rewindkit.tenants(db)[0]
    mark(db, tenant, "launch")
    session(db, tenant)
    holder = db.connect("holder", autocommit=False)
    holder.execute("SELECT simtrail.lock_tenant(%s)", (tenant,))
    holder.execute("SELECT 1 FROM public.patients WHERE tenant_id = %s FOR UPDATE", (tenant,))
    conn = db.connect("diff")
    conn.execute("SET lock_timeout = '3s'")
    report = diffing.since(conn, tenant, "mark:launch")
    assert report["totals"]["changed"] == 2
    holder.rollback()


@pytest.mark.parametrize(
    ("tenant", "args", "message"),
    [
        (None, ("--to", "mark:nope"), "has no mark 'nope'"),
        (None, ("--to", "change:abc"), "is not a change id"),
        (None, ("--to", "last tuesday"), "is not a target"),
        (str(uuid.uuid4()), ("--to", "mark:launch"), "unknown tenant"),
        ("class-7", ("--to", "mark:launch"), "not a valid uuid"),
        (None, ("--against", "x"), "not a valid uuid"),
        (None, (), "exactly one of --to TARGET and --against TEMPLATE"),
    ],
)
def test_bad_input_is_one_line_and_a_non_zero_exit(
    seeded_db: Database, tenant: str | None, args: tuple[str, ...], message: str
) -> None:
    db = seeded_db
    real = rewindkit.tenants(db)[0]
    mark(db, real, "launch")
    before = written(db)
    result = run_cli("diff", "--tenant", tenant or real, *args, dsn=db.dsn)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert message in result.stderr
    if args:
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert written(db) == before


def test_diff_against_the_template_pairs_rows_through_the_key_map(seeded_db: Database) -> None:
    db = seeded_db
    template = rewindkit.tenants(db)[0]
    # The fixture's copy rules and declared references (text uuids, MRNs),
    # and a rule that renews the MRN, so references to it must map too.
    db.sql(
        "INSERT INTO simtrail.copy_rules (table_name, column_name, rule, expression)"
        " VALUES ('public.patients', 'patient_id', 'sql', $$'C-' || patient_id$$)"
    )
    # A unique column with a default and no rule: the copy takes the default.
    db.sql("ALTER TABLE public.patient_vitals ADD COLUMN tag uuid UNIQUE DEFAULT gen_random_uuid()")
    clone = str(uuid.uuid4())
    db.sql("INSERT INTO public.tenants (id, name) VALUES (%s, 'clone')", (clone,))
    db.sql("SELECT simtrail.clone_tenant(%s, %s)", (template, clone))

    fresh = diff_cli(db, clone, "--against", template)
    assert fresh["totals"] == {"only_in_clone": 0, "only_in_template": 0, "differ": 0}
    assert fresh["tables"]["public.lab_panels"]["ignored_columns"] == ["status"]
    assert fresh["tables"]["public.patient_vitals"]["ignored_columns"] == ["tag"]
    assert fresh["tables"]["public.patients"]["ignored_columns"] == ["patient_id", "wristband"]
    assert fresh["tables"]["public.patient_medications"]["ignored_columns"] == [
        "label_printed",
        "last_administered",
    ]
    counts = rewindkit.state(db, template)
    assert {t: c["same"] for t, c in fresh["tables"].items()} == {
        t: n for t, (n, _) in counts.items() if n
    }

    def clone_of(table: str, old: str) -> str:
        new = one(
            db,
            "SELECT k.new_key ->> 'id' FROM simtrail.copy_keys AS k"
            " WHERE k.table_name = %s AND k.old_key = jsonb_build_object('id', %s::uuid)",
            (table, old),
        )
        assert isinstance(new, str)
        return new

    vitals = [
        r["id"]
        for r in db.sql(
            "SELECT id::text AS id FROM public.patient_vitals WHERE tenant_id = %s ORDER BY id",
            (template,),
        )
    ]
    db.sql(
        "UPDATE public.patient_vitals SET heart_rate = 222 WHERE id = %s",
        (clone_of("public.patient_vitals", vitals[0]),),
    )
    dropped = one(
        db,
        "DELETE FROM public.patient_vitals WHERE id = %s RETURNING id::text",
        (clone_of("public.patient_vitals", vitals[1]),),
    )
    added = one(
        db,
        "INSERT INTO public.patient_vitals (tenant_id, patient_id, heart_rate)"
        " SELECT tenant_id, id, 60 FROM public.patients WHERE tenant_id = %s LIMIT 1"
        " RETURNING id::text",
        (clone,),
    )
    db.sql("DELETE FROM public.patient_vitals WHERE id = %s", (vitals[2],))
    late = one(
        db,
        "INSERT INTO public.patient_vitals (tenant_id, patient_id, heart_rate)"
        " SELECT tenant_id, id, 61 FROM public.patients WHERE tenant_id = %s LIMIT 1"
        " RETURNING id::text",
        (template,),
    )
    scan, ref = db.sql(
        "SELECT id::text, patient_id FROM public.medication_scans WHERE tenant_id = %s"
        " ORDER BY id LIMIT 1",
        (template,),
    )[0].values()
    # The clone's scan pointed back at the template's patient: a leak.
    db.sql(
        "UPDATE public.medication_scans SET patient_id = %s WHERE id = %s",
        (ref, clone_of("public.medication_scans", scan)),
    )
    bowel, mrn = db.sql(
        "SELECT id::text, patient_id FROM public.bowel_records WHERE tenant_id = %s"
        " ORDER BY id LIMIT 1",
        (template,),
    )[0].values()
    # An MRN (a unique column, not the key) that no patient has.
    db.sql(
        "UPDATE public.bowel_records SET patient_id = 'MRN-NOPE' WHERE id = %s",
        (clone_of("public.bowel_records", bowel),),
    )
    before = written(db)

    report = diff_cli(db, clone, "--against", template)

    assert report["totals"] == {"only_in_clone": 2, "only_in_template": 2, "differ": 3}
    only_clone = {(r["key"]["id"], r["why"]) for r in report["only_in_clone"]}
    assert only_clone == {
        (added, "added to the clone"),
        (clone_of("public.patient_vitals", vitals[2]), "deleted from the template"),
    }
    only_template = {(r["key"]["id"], r["why"]) for r in report["only_in_template"]}
    assert only_template == {(vitals[1], "deleted from the clone"), (late, "added to the template")}
    assert dropped == clone_of("public.patient_vitals", vitals[1])
    differ = {r["table"]: r for r in report["differ"]}
    assert differ["public.patient_vitals"]["template_key"] == {"id": vitals[0]}
    assert differ["public.patient_vitals"]["columns"] == {
        "heart_rate": {
            "template": one(
                db, "SELECT heart_rate FROM public.patient_vitals WHERE id = %s", (vitals[0],)
            ),
            "clone": 222,
        }
    }
    assert differ["public.medication_scans"]["columns"] == {
        "patient_id": {"template": ref, "clone": ref, "expected": clone_of("public.patients", ref)}
    }
    assert differ["public.bowel_records"]["columns"] == {
        # Through the MRN: the clone's patient has a new one.
        "patient_id": {"template": mrn, "clone": "MRN-NOPE", "expected": f"C-{mrn}"},
    }
    assert written(db) == before

    text = run_cli("diff", "--tenant", clone, "--against", template, dsn=db.dsn)
    assert text.exit_code == 0, text.stderr
    assert "3 rows differ, 2 only in the clone, 2 only in the template" in text.stdout
    assert "      heart_rate: " in text.stdout and " → 222" in text.stdout


def test_diff_against_refused_without_a_recorded_clone(seeded_db: Database) -> None:
    db = seeded_db
    one_class, another = rewindkit.tenants(db)[:2]
    before = written(db)
    result = run_cli("diff", "--tenant", one_class, "--against", another, dsn=db.dsn)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"simtrail: error: no clone of tenant {another} into tenant {one_class} is recorded;"
        " diff against a template needs the key map of a clone"
    ]
    assert written(db) == before
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        db.sql("SELECT simtrail.diff_against(%s, %s)", (one_class, another))
