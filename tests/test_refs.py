"""Declared references (issue 9, part 1): `config ref add|list|remove`, the
candidates `config discover` and `doctor` point out, and who may write them.

The fixture's legacy charting tables name their patient by MRN
(`patients.patient_id`, text, unique per tenant) with no foreign key; the
seeded template declares them (core/clinic/copy_config.sql), so tests that look for
candidates remove them first.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from simtrail.errors import ConfigError
from simtrail.triggers import refs
from tests.catalog import invoke
from tests.conftest import Database, run_cli
from tests.refkit import (
    APP_ROLES,
    FIXTURE_REFS,
    as_app_role,
    cli_json,
    cli_text,
    refs_of,
    refused,
    run_command,
    stored,
)

ADD = ("config", "ref", "add")
MRN_CANDIDATES = [
    {
        "table_name": f"public.{table}",
        "column_name": "patient_id",
        "ref_table": "public.patients",
        "ref_column": "patient_id",
        "key": "unique per tenant",
        "as_text": False,
        "command": f"simtrail config ref add public.{table}.patient_id"
        " --references public.patients.patient_id",
    }
    for table in ("bowel_records", "diabetic_records")
]


def forget_fixture_refs(db: Database) -> None:
    """Undeclare the fixture's MRN references (the others stay declared)."""
    mrn = [r for r in FIXTURE_REFS if r[3] == "patient_id"]
    for table, column, _, _ in mrn:
        out = cli_text(db, "config", "ref", "remove", f"{table}.{column}")
        assert out == f"removed {table}.{column} → public.patients.patient_id\n"
    assert refs_of(db) == [r for r in FIXTURE_REFS if r not in mrn]


def candidates(db: Database) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = cli_json(db, "config", "discover")["references"]
    return found


def distinct_mrns(db: Database, table: str) -> int:
    return int(db.sql(f"SELECT count(DISTINCT patient_id) AS n FROM public.{table}")[0]["n"])


def doctor(db: Database) -> tuple[int, list[dict[str, Any]]]:
    done = run_cli("doctor", "--json", dsn=db.dsn)
    assert done.stderr == ""
    findings: list[dict[str, Any]] = json.loads(done.stdout)["findings"]
    return done.exit_code, findings


def test_the_seeded_fixture_declares_its_mrn_references(seeded_db: Database) -> None:
    listed = cli_json(seeded_db, "config", "ref", "list")
    assert [
        (r["table_name"], r["column_name"], r["ref_table"], r["ref_column"], r["problem"])
        for r in listed
    ] == [(*ref, None) for ref in FIXTURE_REFS]
    assert candidates(seeded_db) == []
    assert doctor(seeded_db) == (0, [])


def test_discover_and_doctor_point_out_the_mrn_references_until_declared(
    seeded_db: Database,
) -> None:
    db = seeded_db
    forget_fixture_refs(db)

    # Exactly the two MRN-keyed tables, each with the command that declares it.
    found = candidates(db)
    assert [{k: v for k, v in c.items() if k != "distinct_values"} for c in found] == (
        MRN_CANDIDATES
    )
    assert [c["distinct_values"] for c in found] == [
        distinct_mrns(db, "bowel_records"),
        distinct_mrns(db, "diabetic_records"),
    ]
    assert all(c["distinct_values"] > 0 for c in found)
    text = cli_text(db, "config", "discover")
    for candidate in MRN_CANDIDATES:
        assert f"  {candidate['command']}\n" in text

    # doctor warns (exit 0), and its fix is the same command.
    code, findings = doctor(db)
    assert code == 0
    assert [(f["severity"], f["kind"], f["table_name"], f["fix"]) for f in findings] == [
        ("warning", "undeclared_reference", c["table_name"], c["command"]) for c in MRN_CANDIDATES
    ]
    assert findings[0]["detail"].startswith(
        "column patient_id holds keys of public.patients.patient_id (unique per tenant, all"
    )

    for finding in findings:
        out = run_command(db, finding["fix"])
        assert out.splitlines()[0] == (
            f"declared {finding['table_name']}.patient_id → public.patients.patient_id"
            " (unique per tenant)"
        )
    assert refs_of(db) == FIXTURE_REFS
    assert doctor(db) == (0, [])
    assert candidates(db) == []


def scan_table(db: Database) -> None:
    """A captured table whose text columns hold a uuid key and a bigint key, with no FK."""
    db.sql(
        "CREATE TABLE public.scan_log (id uuid PRIMARY KEY DEFAULT gen_random_uuid(),"
        " tenant_id uuid, medication_ref text, glucose_ref text, wristband_id text,"
        ' note_id uuid, "Order_Ref" text)'
    )
    cli_text(db, "config", "add", "scan_log", "--tenant-column")
    db.sql(
        "INSERT INTO public.scan_log (tenant_id, medication_ref, glucose_ref, wristband_id,"
        ' "Order_Ref")'
        " SELECT m.tenant_id, m.id::text,"
        "        (SELECT d.id::text FROM public.diabetic_records AS d"
        "         WHERE d.tenant_id = m.tenant_id ORDER BY d.id LIMIT 1),"
        "        'W-' || row_number() OVER (), o.id::text"
        " FROM public.patient_medications AS m"
        " LEFT JOIN LATERAL (SELECT o.id FROM public.doctors_orders AS o"
        "                    WHERE o.patient_id = m.patient_id LIMIT 1) AS o ON true"
    )


def test_text_columns_holding_uuid_and_bigint_keys_are_candidates(seeded_db: Database) -> None:
    db = seeded_db
    scan_table(db)
    rows = int(db.sql("SELECT count(*) AS n FROM public.scan_log")[0]["n"])
    assert rows > 0
    found = {c["column_name"]: c for c in candidates(db)}
    # wristband_id matches nothing, note_id holds no value, tenant_id is the tenant.
    assert sorted(found) == ["Order_Ref", "glucose_ref", "medication_ref"]
    assert {
        k: found["medication_ref"][k] for k in ("ref_table", "ref_column", "key", "as_text")
    } == {
        "ref_table": "public.patient_medications",
        "ref_column": "id",
        "key": "primary key",
        "as_text": True,
    }
    assert (found["glucose_ref"]["ref_table"], found["glucose_ref"]["as_text"]) == (
        "public.diabetic_records",
        True,
    )
    assert found["Order_Ref"]["command"] == (
        "simtrail config ref add 'public.scan_log.\"Order_Ref\"'"
        " --references public.doctors_orders.id"
    )

    added = cli_json(db, *ADD, "scan_log.medication_ref", "--references", "patient_medications")
    assert added == {
        "table_name": "public.scan_log",
        "column_name": "medication_ref",
        "ref_table": "public.patient_medications",
        "ref_column": "id",
        "key": "primary key",
        "as_text": True,
        "matched": rows,
        "dangling": 0,
        "replaced": None,
    }
    # A quoted identifier, as discovery prints it for the shell.
    run_command(db, found["Order_Ref"]["command"])
    assert ("public.scan_log", "Order_Ref", "public.doctors_orders", "id") in refs_of(db)
    out = cli_text(db, "config", "ref", "remove", 'public.scan_log."Order_Ref"')
    assert out == "removed public.scan_log.Order_Ref → public.doctors_orders.id\n"
    assert sorted(c["column_name"] for c in candidates(db)) == ["Order_Ref", "glucose_ref"]


def test_add_counts_values_without_their_row_per_tenant(seeded_db: Database) -> None:
    db = seeded_db
    forget_fixture_refs(db)
    tenant, other = (r["id"] for r in db.sql("SELECT id FROM public.tenants ORDER BY id LIMIT 2"))
    foreign = db.sql(
        "SELECT patient_id FROM public.patients WHERE tenant_id = %s AND patient_id NOT IN"
        " (SELECT patient_id FROM public.patients WHERE tenant_id = %s) LIMIT 1",
        (other, tenant),
    )[0]["patient_id"]
    # An MRN of another class is no reference to a patient of this one.
    db.sql(
        "INSERT INTO public.bowel_records (tenant_id, patient_id) VALUES (%s, %s), (%s, 'MRN-0')",
        (tenant, foreign, tenant),
    )
    total = int(db.sql("SELECT count(*) AS n FROM public.bowel_records")[0]["n"])
    added = cli_json(db, *ADD, "bowel_records.patient_id", "--references", "patients.patient_id")
    assert (added["matched"], added["dangling"], added["key"]) == (
        total - 2,
        2,
        "unique per tenant",
    )
    text = cli_text(db, *ADD, "bowel_records.patient_id", "--references", "patients.patient_id")
    assert text.splitlines() == [
        "declared public.bowel_records.patient_id → public.patients.patient_id (unique per tenant)",
        "replaced the reference to public.patients.patient_id",
        f"{total - 2} value(s) find their row, 2 do not",
    ]


def test_adding_again_replaces_the_declaration(seeded_db: Database) -> None:
    db = seeded_db
    # Bare, qualified or half-qualified names all mean the same stored row.
    added = cli_json(db, *ADD, "public.bowel_records.patient_id", "--references", "public.patients")
    assert added["replaced"] == {"ref_table": "public.patients", "ref_column": "patient_id"}
    assert (added["ref_column"], added["key"], added["as_text"]) == ("id", "primary key", True)
    assert added["matched"] == 0  # MRNs are not row ids: the operator sees it at once
    assert refs_of(db) == [
        ("public.bowel_records", "patient_id", "public.patients", "id"),
        *FIXTURE_REFS[1:],
    ]
    cli_json(db, *ADD, "bowel_records.patient_id", "--references", "public.patients.patient_id")
    assert refs_of(db) == FIXTURE_REFS


REFUSALS = {
    "table-not-captured": (
        ("public.tenants.name", "patients"),
        "table public.tenants is not captured (not in the config, or disabled)",
    ),
    "ref-table-not-captured": (
        ("bowel_records.notes", "tenants"),
        "public.tenants is not captured",
    ),
    "no-such-table": (("nosuch.col", "patients"), "table public.nosuch is not captured"),
    "no-column-part": (("patients", "patients"), "expected TABLE.COLUMN or SCHEMA.TABLE.COLUMN"),
    "too-many-parts": (("a.b.c.d", "patients"), "expected TABLE.COLUMN or SCHEMA.TABLE.COLUMN"),
    "bad-quoting": (('patients."id', "patients"), "unterminated quoted identifier"),
    "empty-part": (("patients..id", "patients"), "is not a valid name"),
    "no-such-column": (
        ("bowel_records.nosuch", "patients"),
        "public.bowel_records has no column nosuch",
    ),
    "no-such-ref-column": (
        ("bowel_records.notes", "public.patients.nosuch"),
        "public.patients has no column nosuch",
    ),
    "tenant-column": (
        ("bowel_records.tenant_id", "patients"),
        "public.bowel_records.tenant_id is the tenant column; a copy sets it to the target tenant",
    ),
    "generated-column": (
        ("patients.full_name", "patients.patient_id"),
        "public.patients.full_name is a generated column; a copy cannot remap it",
    ),
    "already-a-foreign-key": (
        ("patient_vitals.patient_id", "patients"),
        "public.patient_vitals.patient_id is already covered by foreign key"
        " patient_vitals_patient_id_fkey to public.patients; nothing to declare",
    ),
    "foreign-key-elsewhere": (
        ("patient_vitals.recorded_by", "patients"),
        "already covered by foreign key patient_vitals_recorded_by_fkey to public.user_profiles",
    ),
    "not-a-key": (
        ("bowel_records.notes", "patients.first_name"),
        "public.patients.first_name is not a key: a reference points at the primary key, a"
        " column with a unique index of its own, or one unique together with tenant_id",
    ),
    "composite-primary-key": (
        ("bowel_records.notes", "patient_care_team"),
        "public.patient_care_team has a composite primary key (patient_id, user_id); name the"
        " referenced column: --references public.patient_care_team.COLUMN",
    ),
    "type-mismatch": (
        ("lab_results.value", "diabetic_records"),
        "public.lab_results.value is numeric but public.diabetic_records.id is bigint",
    ),
    "smallint-to-uuid": (
        ("bowel_records.stool_type", "patients"),
        "public.bowel_records.stool_type is smallint but public.patients.id is uuid",
    ),
    "itself": (("patients.id", "patients"), "public.patients.id cannot reference itself"),
}


@pytest.mark.parametrize("case", REFUSALS.values(), ids=REFUSALS.keys())
def test_ref_add_refusals_write_nothing(
    seeded_db: Database, case: tuple[tuple[str, str], str]
) -> None:
    (column, target), message = case
    line = refused(seeded_db, *ADD, column, "--references", target)
    assert message in line, line


def test_a_column_with_a_copy_rule_is_not_declared(seeded_db: Database) -> None:
    db = seeded_db
    cli_text(db, "config", "rule", "set", "bowel_records.notes", "--on-copy", "null")
    line = refused(db, *ADD, "bowel_records.notes", "--references", "patients")
    assert line == (
        "public.bowel_records.notes has a copy rule (null), but a copy remaps a reference;"
        " remove the rule first (simtrail config rule remove public.bowel_records.notes)"
    )


def test_remove_refusals_write_nothing(seeded_db: Database) -> None:
    line = refused(seeded_db, "config", "ref", "remove", "patients.room_number")
    assert line == "patients.room_number has no declared reference"
    assert refused(seeded_db, "config", "ref", "remove", "patients") == (
        "'patients': expected TABLE.COLUMN or SCHEMA.TABLE.COLUMN"
    )


def test_a_refusal_with_json_is_one_json_object(seeded_db: Database) -> None:
    result = invoke(
        seeded_db.dsn,
        "config",
        "ref",
        "add",
        "bowel_records.tenant_id",
        "--references",
        "patients",
        "--json",
    )
    assert (result.exit_code, result.stdout) == (2, "")
    error = json.loads(result.stderr)["error"]
    assert (error["kind"], error["exit_code"]) == ("bad_input", 2)
    assert error["message"].endswith("is the tenant column; a copy sets it to the target tenant")


def test_doctor_reports_a_declared_reference_whose_column_is_gone(seeded_db: Database) -> None:
    db = seeded_db
    scan_table(db)
    cli_text(db, *ADD, "scan_log.medication_ref", "--references", "patient_medications.id")
    db.sql("ALTER TABLE public.scan_log DROP COLUMN medication_ref")
    listed = {r["column_name"]: r for r in cli_json(db, "config", "ref", "list")}
    assert listed["medication_ref"]["problem"] == "column medication_ref is gone"
    # The graph the copies read leaves it out.
    graph = db.sql("SELECT * FROM simtrail.references() WHERE table_name = 'public.scan_log'")
    assert graph == []

    code, findings = doctor(db)
    broken = [f for f in findings if f["kind"] == "broken_reference"]
    assert code == 0
    assert [(f["severity"], f["table_name"], f["fix"]) for f in broken] == [
        ("warning", "public.scan_log", "simtrail config ref remove public.scan_log.medication_ref"),
    ]
    assert "no longer holds (column medication_ref is gone)" in broken[0]["detail"]
    run_command(db, broken[0]["fix"])
    assert [f for f in doctor(db)[1] if f["kind"] == "broken_reference"] == []


@pytest.mark.parametrize("role", APP_ROLES)
@pytest.mark.parametrize(
    "statement",
    [
        "SELECT simtrail.add_reference('public.bowel_records', 'notes', 'public.patients', 'id')",
        "SELECT simtrail.add_reference('bowel_records', 'notes', 'patients')",
        "SELECT simtrail.remove_reference('public.bowel_records', 'patient_id')",
        "SELECT * FROM simtrail.reference_candidates()",
        "INSERT INTO simtrail.refs (table_name, column_name, ref_table, ref_column)"
        " VALUES ('public.bowel_records', 'notes', 'public.patients', 'id')",
        "UPDATE simtrail.refs SET ref_column = 'id'",
        "DELETE FROM simtrail.refs",
        "SELECT * FROM simtrail.refs",
    ],
)
def test_app_roles_cannot_declare_references(
    seeded_db: Database, role: str, statement: str
) -> None:
    before = stored(seeded_db)
    assert as_app_role(seeded_db, role, statement) == "42501"  # insufficient_privilege
    assert stored(seeded_db) == before


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("public.patients.patient_id", ["public", "patients", "patient_id"]),
        ("patients.patient_id", ["patients", "patient_id"]),
        ("Patients.Patient_ID", ["patients", "patient_id"]),
        (' public . "Scan Log"."Order.Ref" ', ["public", "Scan Log", "Order.Ref"]),
        ('"a""b".c', ['a"b', "c"]),
        ("émargement.référence", ["émargement", "référence"]),
    ],
)
def test_names_split_as_postgresql_reads_them(text: str, parts: list[str]) -> None:
    assert refs.split_name(text) == parts


@pytest.mark.parametrize("text", ["", "a..b", "a.", ".a", '"a', '""', "a b", "1a.b", "a;b"])
def test_malformed_names_are_refused(text: str) -> None:
    with pytest.raises(ConfigError):
        refs.split_name(text)


def test_column_arguments_keep_the_table_quoted_for_sql() -> None:
    assert refs.parse_column("public.patients.patient_id") == ("public.patients", "patient_id")
    assert refs.parse_column('"Scan Log"."Order_Ref"') == ('"Scan Log"', "Order_Ref")
    assert refs.parse_column('x."a""b".c') == ('x."a""b"', "c")


def test_retiring_a_dropped_table_takes_its_references_and_rules(seeded_db: Database) -> None:
    db = seeded_db
    cli_text(db, "config", "rule", "set", "bowel_records.notes", "--on-copy", "null")
    cli_text(db, "config", "rule", "set", "patients.room_number", "--on-copy", "null")
    rules_before = [(r["table_name"], r["column_name"]) for r in stored(db)["copy_rules"]]
    db.sql("DROP TABLE public.bowel_records")
    cli_text(db, "config", "retire", "bowel_records")
    assert refs_of(db) == [r for r in FIXTURE_REFS if r[0] != "public.bowel_records"]
    rules_after = [(r["table_name"], r["column_name"]) for r in stored(db)["copy_rules"]]
    assert rules_after == [r for r in rules_before if r[0] != "public.bowel_records"]
    assert ("public.patients", "room_number") in rules_after
    assert doctor(db) == (0, [])


def test_discovery_finds_every_reference_the_fixture_declares(seeded_db: Database) -> None:
    """With nothing declared, the candidates are exactly the fixture's references
    without a foreign key: MRNs, uuids held as text, a bare uuid."""
    db = seeded_db
    for table, column, _, _ in FIXTURE_REFS:
        cli_text(db, "config", "ref", "remove", f"{table}.{column}")
    found = candidates(db)
    assert [
        (c["table_name"], c["column_name"], c["ref_table"], c["ref_column"]) for c in found
    ] == (FIXTURE_REFS)
    for candidate in found:
        run_command(db, candidate["command"])
    assert refs_of(db) == FIXTURE_REFS
    assert doctor(db) == (0, [])
