"""Marks and history through the real CLI."""

from __future__ import annotations

import json

import psycopg

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
