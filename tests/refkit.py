"""Helpers for the declared-reference and copy-rule tests."""

from __future__ import annotations

import json
import shlex
from typing import Any

import psycopg

from tests.catalog import assert_one_line_error, invoke
from tests.conftest import Database

APP_ROLES = ["authenticated", "anon"]
# The fixture's references without a foreign key, as core/clinic/copy_config.sql declares them.
FIXTURE_REFS = sorted(
    [
        ("public.bowel_records", "patient_id", "public.patients", "patient_id"),
        ("public.diabetic_records", "patient_id", "public.patients", "patient_id"),
        ("public.medication_scans", "medication_id", "public.patient_medications", "id"),
        ("public.medication_scans", "patient_id", "public.patients", "id"),
        ("public.wound_treatments", "wound_assessment_id", "public.wound_assessments", "id"),
    ]
)


def stored(db: Database) -> dict[str, list[dict[str, Any]]]:
    """Everything `config ref` and `config rule` may write, to prove a refusal wrote nothing."""
    return {
        "refs": db.sql("SELECT * FROM simtrail.refs ORDER BY table_name, column_name"),
        "copy_rules": db.sql("SELECT * FROM simtrail.copy_rules ORDER BY table_name, column_name"),
    }


def refs_of(db: Database) -> list[tuple[str, str, str, str]]:
    rows = db.sql(
        "SELECT table_name, column_name, ref_table, ref_column FROM simtrail.refs ORDER BY 1, 2"
    )
    return [(r["table_name"], r["column_name"], r["ref_table"], r["ref_column"]) for r in rows]


def cli_json(db: Database, *args: str) -> Any:
    """A command's --json result, less the `connection` a writing command adds."""
    result = invoke(db.dsn, *args, "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    if isinstance(data, dict):
        connection = data.pop("connection", None)
        assert connection is None or connection["database"] == db.name
    return data


def cli_text(db: Database, *args: str) -> str:
    result = invoke(db.dsn, *args)
    assert result.exit_code == 0, result.stderr
    return result.stdout


def run_command(db: Database, command: str) -> str:
    """A `simtrail …` command line as doctor or discover prints it, run as typed."""
    words = shlex.split(command)
    assert words[0] == "simtrail"
    return cli_text(db, *words[1:])


def refused(db: Database, *args: str) -> str:
    """Run a command that must be refused: one line on stderr, exit 2, nothing written."""
    before = stored(db)
    result = invoke(db.dsn, *args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    line = assert_one_line_error(result.stderr)
    assert stored(db) == before
    return line.removeprefix("simtrail: error: ")


def as_app_role(db: Database, role: str, statement: str) -> str | None:
    """One statement as an app role, with PostgREST's claims set; the SQLSTATE it failed with."""
    with psycopg.connect(db.dsn) as conn:
        tenant = conn.execute("SELECT id::text FROM public.tenants ORDER BY id LIMIT 1").fetchone()
        claims = {"role": role, "sub": "s-1", "tenant_id": tenant[0] if tenant else None}
        conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (json.dumps(claims),))
        conn.execute(f"SET LOCAL ROLE {role}")  # role names are the constants above
        try:
            conn.execute(statement.encode())
        except psycopg.Error as exc:
            return exc.sqlstate
        return None
