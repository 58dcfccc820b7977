"""Purge a class: every captured row of the tenant deleted as a captured write,
given back exactly by a rewind to a mark before it; other classes untouched;
every refusal writes nothing."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

from tests import copykit, rewindkit
from tests.conftest import Database, run_cli
from tests.rewindkit import mark, state


def purge_cli(db: Database, tenant: str, *args: str) -> dict[str, Any]:
    result = run_cli("purge", "--tenant", tenant, "--json", *args, dsn=db.dsn)
    assert result.exit_code == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def everything(db: Database) -> tuple[dict[str, Any], dict[str, int], int]:
    """Every tenant's state, every table's and simtrail table's row count, work rows."""
    work = db.sql("SELECT count(*) AS n FROM simtrail.rewind_net")[0]["n"]
    return rewindkit.all_states(db), copykit.counts(db), int(work)


def refused_cli(db: Database, tenant: str) -> str:
    """The one stderr line of a purge that must be refused; proves nothing was written."""
    before = everything(db)
    result = run_cli("purge", "--tenant", tenant, dsn=db.dsn)
    assert result.exit_code != 0
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert everything(db) == before
    return result.stderr.strip()


def test_purge_then_rewind_to_a_mark_before_it_gives_the_class_back(seeded_db: Database) -> None:
    db = seeded_db
    tenant, *others = rewindkit.tenants(db)
    # The application's audit trail of who opened which chart: untracked, and
    # its patient reference is ON DELETE SET NULL, as when the app deletes.
    db.sql(
        "INSERT INTO public.chart_audit (user_id, patient_id, action)"
        " SELECT (SELECT id FROM public.user_profiles ORDER BY id LIMIT 1), p.id, 'open'"
        " FROM public.patients AS p WHERE p.tenant_id = %s",
        (tenant,),
    )
    mark(db, tenant, "before purge")
    before = rewindkit.all_states(db)

    report = purge_cli(db, tenant)

    expected = {t: {"deleted": n} for t, (n, _) in before[tenant].items() if n}
    assert report["tables"] == expected
    assert report["totals"]["deleted"] == sum(n for n, _ in before[tenant].values())
    assert report["dry_run"] is False
    assert report["untracked"] == [
        {
            "table": "public.chart_audit",
            "columns": ["patient_id"],
            "references": "public.patients",
            "foreign_key": "chart_audit_patient_id_fkey",
            "rows": 4,
            "on_delete": "set null",
        }
    ]
    assert all(n == 0 for n, _ in state(db, tenant).values())
    assert (
        db.sql("SELECT count(*) AS n FROM public.chart_audit WHERE patient_id IS NULL")[0]["n"] == 4
    )
    for other in others:
        assert state(db, other) == before[other]
    # Captured like any write: every deleted row is in the tenant's log.
    logged = db.sql(
        "SELECT count(*) AS n FROM simtrail.changes WHERE tenant_id = %s AND operation = 'DELETE'",
        (tenant,),
    )[0]["n"]
    assert logged == report["totals"]["deleted"]

    back = run_cli("rewind", "--tenant", tenant, "--to", "mark:before purge", dsn=db.dsn)
    assert back.exit_code == 0, back.stderr
    assert rewindkit.all_states(db) == before


def test_dry_run_reports_the_counts_and_writes_nothing(seeded_db: Database) -> None:
    db = seeded_db
    tenant = rewindkit.tenants(db)[0]
    before = everything(db)
    report = purge_cli(db, tenant, "--dry-run")
    assert report["dry_run"] is True
    assert report["tables"] == {t: {"deleted": n} for t, (n, _) in state(db, tenant).items() if n}
    assert everything(db) == before

    text = run_cli("purge", "--tenant", tenant, "--dry-run", dsn=db.dsn)
    assert text.exit_code == 0, text.stderr
    assert f"would delete {report['totals']['deleted']} rows of tenant {tenant}" in text.stdout
    assert "dry run: nothing was changed" in text.stdout
    assert everything(db) == before


def test_refused_when_another_tenants_row_references_the_tenants_row(seeded_db: Database) -> None:
    db = seeded_db
    tenant, other = rewindkit.tenants(db)[:2]
    # A barcode scan of the other class, made on this class's patient.
    db.sql(
        "INSERT INTO public.medication_administrations (tenant_id, medication_id, patient_id)"
        " VALUES (%s, (SELECT id FROM public.patient_medications WHERE tenant_id = %s LIMIT 1),"
        "         (SELECT id FROM public.patients WHERE tenant_id = %s LIMIT 1))",
        (other, other, tenant),
    )
    line = refused_cli(db, tenant)
    assert "refused" in line
    assert "public.medication_administrations" in line
    assert f"tenant {other}" in line
    # The other class may go: its own row goes with it, and this class is untouched.
    plan = db.sql("SELECT simtrail.purge_tenant(%s, true) AS r", (other,))[0]["r"]
    assert plan["tables"]["public.medication_administrations"]["deleted"] > 0


def test_refused_when_a_declared_text_reference_crosses_tenants(seeded_db: Database) -> None:
    db = seeded_db
    tenant, other = rewindkit.tenants(db)[:2]
    # The fixture's scanner log holds the patient's uuid as text, with no FK.
    db.sql(
        "INSERT INTO public.medication_scans (tenant_id, patient_id)"
        " VALUES (%s, (SELECT id::text FROM public.patients WHERE tenant_id = %s LIMIT 1))",
        (other, tenant),
    )
    line = refused_cli(db, tenant)
    assert "public.medication_scans.patient_id" in line
    assert f"tenant {other}" in line


def test_refused_when_an_untracked_foreign_key_would_block_the_delete(seeded_db: Database) -> None:
    db = seeded_db
    tenant = rewindkit.tenants(db)[0]
    db.sql(
        "CREATE TABLE public.wristband_prints (id serial PRIMARY KEY,"
        " patient_id uuid NOT NULL REFERENCES public.patients (id))"
    )
    db.sql(
        "INSERT INTO public.wristband_prints (patient_id)"
        " SELECT id FROM public.patients WHERE tenant_id = %s LIMIT 2",
        (tenant,),
    )
    line = refused_cli(db, tenant)
    assert "2 row(s) of public.wristband_prints" in line
    assert "NO ACTION" in line


def test_refused_when_an_application_trigger_keeps_a_row(seeded_db: Database) -> None:
    db = seeded_db
    tenant = rewindkit.tenants(db)[0]
    db.sql(
        "CREATE FUNCTION public.keep_notes() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN RETURN NULL; END $$"
    )
    db.sql(
        "CREATE TRIGGER notes_kept BEFORE DELETE ON public.patient_notes"
        " FOR EACH ROW EXECUTE FUNCTION public.keep_notes()"
    )
    line = refused_cli(db, tenant)
    assert "public.patient_notes were still there" in line


def test_unknown_or_malformed_tenant_is_refused(seeded_db: Database) -> None:
    db = seeded_db
    unknown = str(uuid.uuid4())
    assert "unknown tenant" in refused_cli(db, unknown)
    assert "not a valid uuid" in refused_cli(db, "class-7")
    result = run_cli("purge", "--tenant", unknown, dsn=db.dsn)
    assert result.exit_code == 2


def test_a_writer_holding_the_tenant_is_waited_for_and_its_row_purged(
    seeded_db: Database,
) -> None:
    db = seeded_db
    tenant, other = rewindkit.tenants(db)[:2]
    other_before = state(db, other)
    writer = db.connect("writer", autocommit=False)
    writer.execute(
        "INSERT INTO public.patient_vitals (tenant_id, patient_id, heart_rate)"
        " SELECT tenant_id, id, 77 FROM public.patients WHERE tenant_id = %s LIMIT 1",
        (tenant,),
    )
    done: dict[str, Any] = {}

    def run() -> None:
        done["report"] = db.sql("SELECT simtrail.purge_tenant(%s) AS r", (tenant,))[0]["r"]

    purger = threading.Thread(target=run)
    purger.start()
    writer.commit()
    purger.join(timeout=60)
    assert not purger.is_alive()
    assert all(n == 0 for n, _ in state(db, tenant).values())
    assert done["report"]["totals"]["deleted"] == sum(
        1
        for _ in db.sql(
            "SELECT 1 FROM simtrail.changes WHERE tenant_id = %s AND operation = 'DELETE'",
            (tenant,),
        )
    )
    assert state(db, other) == other_before
