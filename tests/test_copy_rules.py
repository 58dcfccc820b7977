"""Column rules for copies (issue 9, part 2): `config rule set|list|remove`.

A rule is checked against its column when it is set: an `sql:` expression is
planned as the INSERT a copy would run (parsed and type-checked, nothing
executed). Every refusal is one line, exit 2, and stores nothing.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest

from tests.conftest import Database, run_cli
from tests.refkit import APP_ROLES, as_app_role, cli_json, cli_text, refused, run_command, stored

WRISTBAND = "sql:'P' || lpad((floor(random()*1e8))::bigint::text, 8, '0')"


def rules(db: Database) -> list[tuple[str, str, str]]:
    return [
        (r["table_name"], r["column_name"], r["on_copy"])
        for r in cli_json(db, "config", "rule", "list")
    ]



@pytest.fixture
def seeded_db(seeded_db: Database) -> Database:
    """The seeded fixture without its own copy rules, so each test sees only the rules it sets."""
    seeded_db.sql("DELETE FROM simtrail.copy_rules")
    return seeded_db

def test_rules_are_stored_listed_replaced_and_removed(seeded_db: Database) -> None:
    db = seeded_db
    set_one = cli_json(db, "config", "rule", "set", "patients.room_number", "--on-copy", WRISTBAND)
    assert set_one == {
        "table_name": "public.patients",
        "column_name": "room_number",
        "rule": "sql",
        "expression": "'P' || lpad((floor(random()*1e8))::bigint::text, 8, '0')",
        "replaced": None,
    }
    # The user's own resets on copy, and an expression naming source columns.
    for column, rule in [
        ("lab_panels.status", "sql:'new'"),
        ("patient_medications.start_date", "null"),
        ("public.patient_medications.status", "default"),
        ("patients.diagnosis", "sql:s.last_name || ', ' || first_name || ' (copy)'"),
        ("diabetic_records.id", "default"),  # an identity column
        ("patients.patient_id", "keep"),  # unique per tenant only: a copy may keep it
    ]:
        cli_text(db, "config", "rule", "set", column, "--on-copy", rule)
    out = cli_text(db, "config", "rule", "set", "lab_panels.status", "--on-copy", " DEFAULT ")
    assert out == "on copy, public.lab_panels.status: default (was sql:'new')\n"

    assert rules(db) == [
        ("public.diabetic_records", "id", "default"),
        ("public.lab_panels", "status", "default"),
        ("public.patient_medications", "start_date", "null"),
        ("public.patient_medications", "status", "default"),
        ("public.patients", "diagnosis", "sql:s.last_name || ', ' || first_name || ' (copy)'"),
        ("public.patients", "patient_id", "keep"),
        ("public.patients", "room_number", WRISTBAND),
    ]
    listed = cli_json(db, "config", "rule", "list")
    assert {r["problem"] for r in listed} == {None}
    assert {r["set_by"] for r in listed} == {db.sql("SELECT session_user::text AS u")[0]["u"]}

    out = cli_text(db, "config", "rule", "remove", "public.patients.room_number")
    assert out == f"removed the rule of public.patients.room_number ({WRISTBAND})\n"
    assert ("public.patients", "room_number", WRISTBAND) not in rules(db)
    # Setting and listing rules changes no application row.
    assert db.sql("SELECT count(*) AS n FROM public.patients WHERE room_number LIKE 'P%'") == [
        {"n": 0}
    ]


BAD_EXPRESSIONS = {
    "syntax-error": (
        "medication_administrations.notes",
        "sql:'P' ||",
        'rule for public.medication_administrations.notes: syntax error at or near ")"',
    ),
    "unbalanced-call": (
        "medication_administrations.notes",
        "sql:now(",
        'rule for public.medication_administrations.notes: syntax error at or near "FROM"',
    ),
    "wrong-type": (
        "bowel_records.continent",
        "sql:now()",
        'rule for public.bowel_records.continent: column "continent" is of type boolean but'
        " expression is of type timestamp with time zone",
    ),
    "bad-literal": (
        "patient_vitals.pain_score",
        "sql:'x'",
        'rule for public.patient_vitals.pain_score: invalid input syntax for type smallint: "x"',
    ),
    "unknown-column": (
        "patients.room_number",
        "sql:s.ward || 'x'",
        "rule for public.patients.room_number: column s.ward does not exist",
    ),
    "unknown-bare-column": (
        "patients.room_number",
        "sql:ward",
        'rule for public.patients.room_number: column "ward" does not exist',
    ),
    "aggregate": (
        "patients.room_number",
        "sql:max(s.room_number)",
        "rule for public.patients.room_number: the expression must give one value per copied"
        " row: no aggregate, window or set-returning function outside a subquery",
    ),
    "set-returning": (
        "patients.room_number",
        "sql:unnest(s.allergies)",
        "the expression must give one value per copied row",
    ),
    "empty": (
        "patients.room_number",
        "sql:  ",
        "rule for public.patients.room_number: sql: needs an expression",
    ),
}


@pytest.mark.parametrize("case", BAD_EXPRESSIONS.values(), ids=BAD_EXPRESSIONS.keys())
def test_a_bad_expression_is_refused_at_rule_set(
    seeded_db: Database, case: tuple[str, str, str]
) -> None:
    column, rule, message = case
    line = refused(seeded_db, "config", "rule", "set", column, "--on-copy", rule)
    assert message in line, line


def test_a_smuggled_second_statement_is_refused_not_run(seeded_db: Database) -> None:
    db = seeded_db
    before = db.sql("SELECT count(*) AS n FROM public.lab_results")
    rule = "sql:1) FROM ONLY public.patients AS s; DELETE FROM public.lab_results; SELECT (1"
    line = refused(db, "config", "rule", "set", "patients.room_number", "--on-copy", rule)
    assert line.startswith("rule for public.patients.room_number: ")
    assert db.sql("SELECT count(*) AS n FROM public.lab_results") == before


def test_a_scalar_subquery_may_aggregate(seeded_db: Database) -> None:
    rule = "sql:(SELECT count(*) FROM public.patients AS p WHERE p.tenant_id = s.tenant_id)::text"
    cli_text(seeded_db, "config", "rule", "set", "patients.room_number", "--on-copy", rule)
    assert rules(seeded_db) == [("public.patients", "room_number", rule)]


REFUSALS = {
    "table-not-captured": ("tenants.name", "keep", "public.tenants is not captured"),
    "no-such-column": ("patients.ward", "keep", "public.patients has no column ward"),
    "generated": (
        "patients.full_name",
        "keep",
        "public.patients.full_name is a generated column; a copy computes it",
    ),
    "tenant-column": (
        "patients.tenant_id",
        "null",
        "public.patients.tenant_id is the tenant column; a copy sets it to the target tenant",
    ),
    "foreign-key": (
        "patient_vitals.patient_id",
        "keep",
        "public.patient_vitals.patient_id is a reference to public.patients (foreign key"
        " patient_vitals_patient_id_fkey); a copy remaps it, so it takes no rule",
    ),
    "self-reference": (
        "doctors_orders.supersedes_id",
        "null",
        "public.doctors_orders.supersedes_id is a reference to public.doctors_orders",
    ),
    "declared-reference": (
        "bowel_records.patient_id",
        WRISTBAND,
        "public.bowel_records.patient_id is a reference to public.patients (declared); a copy"
        " remaps it, so it takes no rule",
    ),
    "null-on-not-null": (
        "patients.first_name",
        "null",
        "rule for public.patients.first_name: null, but the column is NOT NULL",
    ),
    "default-without-one": (
        "patients.first_name",
        "default",
        "rule for public.patients.first_name: default, but the column is NOT NULL and has no"
        " default",
    ),
    "keep-on-primary-key": (
        "diabetic_records.id",
        "keep",
        "rule for public.diabetic_records.id: keep would collide, the column is unique and the"
        " source row keeps its value",
    ),
    "null-on-identity": (
        "diabetic_records.id",
        "null",
        "rule for public.diabetic_records.id: null, but the column is NOT NULL",
    ),
    "unknown-rule": (
        "patients.room_number",
        "random",
        "rule for public.patients.room_number: unknown rule 'random'; use keep, default, null"
        " or sql:EXPR",
    ),
    "bad-name": ("room_number", "keep", "expected TABLE.COLUMN or SCHEMA.TABLE.COLUMN"),
}


@pytest.mark.parametrize("case", REFUSALS.values(), ids=REFUSALS.keys())
def test_rule_set_refusals_write_nothing(seeded_db: Database, case: tuple[str, str, str]) -> None:
    column, rule, message = case
    line = refused(seeded_db, "config", "rule", "set", column, "--on-copy", rule)
    assert message in line, line


def test_a_refusal_on_the_command_line_is_one_line(seeded_db: Database) -> None:
    before = stored(seeded_db)
    done = run_cli(
        "config",
        "rule",
        "set",
        "bowel_records.continent",
        "--on-copy",
        "sql:now()",
        dsn=seeded_db.dsn,
    )
    assert (done.exit_code, done.stdout) == (2, "")
    assert done.stderr == (
        'simtrail: error: rule for public.bowel_records.continent: column "continent" is of'
        " type boolean but expression is of type timestamp with time zone\n"
    )
    assert stored(seeded_db) == before


def test_a_nullable_column_takes_null_and_default(seeded_db: Database) -> None:
    db = seeded_db
    # No default and nullable: `default` writes NULL, like an INSERT leaving it out.
    cli_text(db, "config", "rule", "set", "patients.room_number", "--on-copy", "default")
    cli_text(db, "config", "rule", "set", "patient_vitals.recorded_by", "--on-copy", "null")
    assert rules(db) == [
        ("public.patient_vitals", "recorded_by", "null"),
        ("public.patients", "room_number", "default"),
    ]


def test_remove_without_a_rule_is_refused(seeded_db: Database) -> None:
    line = refused(seeded_db, "config", "rule", "remove", "patients.room_number")
    assert line == "patients.room_number has no copy rule"


def test_doctor_reports_a_rule_that_no_longer_applies(seeded_db: Database) -> None:
    db = seeded_db
    cli_text(db, "config", "rule", "set", "patients.room_number", "--on-copy", "sql:s.sex || '-'")
    cli_text(db, "config", "rule", "set", "patients.diagnosis", "--on-copy", "null")
    db.sql("ALTER TABLE public.patients DROP COLUMN sex")
    db.sql("ALTER TABLE public.patients DROP COLUMN diagnosis")
    listed = {r["column_name"]: r["problem"] for r in cli_json(db, "config", "rule", "list")}
    assert listed == {
        "room_number": "column s.sex does not exist",
        "diagnosis": "column diagnosis is gone",
    }

    done = run_cli("doctor", "--json", dsn=db.dsn)
    findings: list[dict[str, Any]] = json.loads(done.stdout)["findings"]
    broken = [f for f in findings if f["kind"] == "broken_copy_rule"]
    assert [(f["severity"], f["table_name"], f["fix"]) for f in broken] == [
        ("warning", "public.patients", "simtrail config rule remove public.patients.diagnosis"),
        ("warning", "public.patients", "simtrail config rule remove public.patients.room_number"),
    ]
    for finding in broken:
        run_command(db, finding["fix"])
    assert rules(db) == []


@pytest.mark.parametrize("role", APP_ROLES)
@pytest.mark.parametrize(
    "statement",
    [
        "SELECT simtrail.set_copy_rule('public.patients', 'room_number', 'null')",
        "SELECT simtrail.set_copy_rule('patients', 'room_number', 'sql:''x''')",
        "SELECT simtrail.remove_copy_rule('public.patients', 'room_number')",
        "INSERT INTO simtrail.copy_rules (table_name, column_name, rule, expression)"
        " VALUES ('public.patients', 'room_number', 'sql', 'public.evil()')",
        "UPDATE simtrail.copy_rules SET expression = 'public.evil()'",
        "DELETE FROM simtrail.copy_rules",
        "SELECT * FROM simtrail.copy_rule_problems()",
    ],
)
def test_app_roles_cannot_write_rules(seeded_db: Database, role: str, statement: str) -> None:
    db = seeded_db
    cli_text(db, "config", "rule", "set", "patients.room_number", "--on-copy", "keep")
    before = stored(db)
    assert as_app_role(db, role, statement) == "42501"  # insufficient_privilege
    assert stored(db) == before


def test_a_clone_applies_the_rules_set_here(seeded_db: Database) -> None:
    """The rules as `rule set` stores them are what the copy engine runs:
    expressions naming the source row's columns, bare or as s.col."""
    db = seeded_db
    for column, rule in [
        ("patients.room_number", WRISTBAND),
        ("patients.wristband", WRISTBAND),
        ("patients.diagnosis", "sql:s.last_name || ', ' || first_name"),
        ("lab_panels.status", "sql:'new'"),
        ("patient_medications.start_date", "null"),
    ]:
        cli_text(db, "config", "rule", "set", column, "--on-copy", rule)
    source = db.sql("SELECT id::text FROM public.tenants ORDER BY id LIMIT 1")[0]["id"]
    target = str(uuid.uuid4())
    db.sql("INSERT INTO public.tenants (id, name) VALUES (%s, 'copy')", (target,))
    cli_json(db, "clone", "--from", source, "--to", target)

    patients = db.sql(
        "SELECT room_number, diagnosis, last_name || ', ' || first_name AS expected"
        " FROM public.patients WHERE tenant_id = %s",
        (target,),
    )
    assert patients
    assert all(re.fullmatch(r"P\d{8}", p["room_number"]) for p in patients)
    assert all(p["diagnosis"] == p["expected"] for p in patients)
    assert db.sql(
        "SELECT DISTINCT status FROM public.lab_panels WHERE tenant_id = %s", (target,)
    ) == [{"status": "new"}]
    assert db.sql(
        "SELECT count(*) AS n FROM public.patient_medications"
        " WHERE tenant_id = %s AND start_date IS NOT NULL",
        (target,),
    ) == [{"n": 0}]
    # The source keeps its own values.
    assert db.sql(
        "SELECT count(*) AS n FROM public.lab_panels WHERE tenant_id = %s AND status = 'new'",
        (source,),
    ) == [{"n": 0}]
