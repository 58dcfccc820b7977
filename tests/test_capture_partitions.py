"""I5 for partitioned tables: writes straight into a partition are logged under the table."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator

import pytest

from tests import logcheck, rewindkit
from tests.catalog import invoke
from tests.conftest import Database

# A partitioned table with a partition that is itself partitioned, and a
# cascade into it from patients.
PARTITIONED = """
CREATE SCHEMA parts;
CREATE TABLE parts.observations (
    id         bigint NOT NULL,
    tenant_id  uuid NOT NULL REFERENCES public.tenants (id),
    patient_id uuid NOT NULL REFERENCES public.patients (id) ON DELETE CASCADE,
    value      numeric NOT NULL,
    PRIMARY KEY (id)
) PARTITION BY RANGE (id);
CREATE TABLE parts.observations_low PARTITION OF parts.observations FOR VALUES FROM (0) TO (1000);
CREATE TABLE parts.observations_high PARTITION OF parts.observations
    FOR VALUES FROM (1000) TO (MAXVALUE) PARTITION BY RANGE (id);
CREATE TABLE parts.observations_high_a PARTITION OF parts.observations_high
    FOR VALUES FROM (1000) TO (2000);
CREATE TABLE parts.observations_high_rest PARTITION OF parts.observations_high DEFAULT;
INSERT INTO public.simulation_table_config
    (table_name, category, has_tenant_id, has_patient_id, requires_id_mapping, delete_order,
     enabled)
VALUES ('parts.observations', 'test', true, true, false, 1, true);
SELECT simtrail.sync(true);
"""


@pytest.fixture
def parts_db(seeded_db: Database) -> Iterator[Database]:
    seeded_db.sql(PARTITIONED)
    yield seeded_db


def logged_ops(db: Database, since: int) -> Counter[tuple[str, str]]:
    rows = db.sql("SELECT table_name, operation FROM simtrail.changes WHERE id > %s", (since,))
    return Counter((r["table_name"], r["operation"]) for r in rows)


def last_id(db: Database) -> int:
    return int(db.sql("SELECT coalesce(max(id), 0) AS id FROM simtrail.changes")[0]["id"])


def patient_of(db: Database, tenant: str) -> str:
    return str(
        db.sql(
            "SELECT id::text FROM public.patients WHERE tenant_id = %s ORDER BY id LIMIT 1",
            (tenant,),
        )[0]["id"]
    )


def test_writes_into_partitions_are_captured_once_under_the_table(parts_db: Database) -> None:
    db = parts_db
    tenant = rewindkit.tenants(db)[0]
    patient = patient_of(db, tenant)
    since = last_id(db)
    ins = "INSERT INTO {} (id, tenant_id, patient_id, value) VALUES (%s, %s, %s, 1)"
    db.sql(ins.format("parts.observations"), (1, tenant, patient))
    db.sql(ins.format("parts.observations_low"), (2, tenant, patient))
    db.sql(ins.format("parts.observations_high"), (1500, tenant, patient))
    db.sql(ins.format("parts.observations_high_rest"), (5000, tenant, patient))
    db.sql("UPDATE parts.observations_low SET value = value + 1")
    db.sql("UPDATE parts.observations_high_a SET value = 7")
    # Moves a row between partitions through the named table.
    db.sql("UPDATE parts.observations SET id = 1600 WHERE id = 2")
    db.sql("DELETE FROM parts.observations_high_rest")
    assert logged_ops(db, since) == {
        ("parts.observations", "INSERT"): 4,
        ("parts.observations", "UPDATE"): 4,
        ("parts.observations", "DELETE"): 1,
    }
    assert {
        r["tenant_id"]
        for r in db.sql("SELECT DISTINCT tenant_id FROM simtrail.changes WHERE id > %s", (since,))
    } == {tenant}

    # TRUNCATE fires on every table it empties: each logs only its own rows.
    since = last_id(db)
    db.sql("TRUNCATE parts.observations_high")
    # 1500 and 1600 (moved there above) were in it; 1 stays in the low partition.
    assert logged_ops(db, since) == {("parts.observations", "TRUNCATE"): 2}
    db.sql(ins.format("parts.observations"), (3, tenant, patient))
    db.sql(ins.format("parts.observations"), (1700, tenant, patient))
    since = last_id(db)
    db.sql("TRUNCATE parts.observations")
    assert logged_ops(db, since) == {("parts.observations", "TRUNCATE"): 3}
    assert sorted(
        r["row_pk"]["id"]
        for r in db.sql("SELECT row_pk FROM simtrail.changes WHERE id > %s", (since,))
    ) == [1, 3, 1700]

    # A cascade from patients reaches the partitions through the named table.
    db.sql(ins.format("parts.observations_low"), (4, tenant, patient))
    db.sql(ins.format("parts.observations_high_a"), (1800, tenant, patient))
    since = last_id(db)
    db.sql("DELETE FROM public.patients WHERE id = %s", (patient,))
    assert logged_ops(db, since)[("parts.observations", "DELETE")] == 2

    replayed = logcheck.replay(db)
    assert replayed.problems == []
    assert replayed.state["parts.observations"] == logcheck.live_state(db)["parts.observations"]


def test_a_rewind_undoes_writes_made_straight_into_a_partition(parts_db: Database) -> None:
    db = parts_db
    tenant = rewindkit.tenants(db)[0]
    patient = patient_of(db, tenant)
    db.sql(
        "INSERT INTO parts.observations (id, tenant_id, patient_id, value)"
        " VALUES (10, %s, %s, 1), (1010, %s, %s, 2)",
        (tenant, patient, tenant, patient),
    )
    rewindkit.mark(db, tenant, "m")
    before = rewindkit.state(db, tenant)
    db.sql(
        "INSERT INTO parts.observations_low (id, tenant_id, patient_id, value)"
        " VALUES (11, %s, %s, 3)",
        (tenant, patient),
    )
    db.sql("UPDATE parts.observations_high_a SET value = 99")
    db.sql("DELETE FROM parts.observations_low WHERE id = 10")
    assert rewindkit.state(db, tenant) != before
    report = rewindkit.rewind(db, tenant, "mark:m")
    assert report["changes_undone"] == 3
    assert rewindkit.state(db, tenant) == before


def test_a_new_partition_is_reported_then_captured_by_sync(parts_db: Database) -> None:
    db = parts_db
    tenant = rewindkit.tenants(db)[0]
    patient = patient_of(db, tenant)
    db.sql("DROP TABLE parts.observations_high_rest")
    db.sql(
        "CREATE TABLE parts.observations_high_b PARTITION OF parts.observations_high"
        " FOR VALUES FROM (2000) TO (3000)"
    )
    result = invoke(db.dsn, "doctor", "--json")
    assert result.exit_code == 1
    findings = json.loads(result.stdout)["findings"]
    assert [(f["kind"], f["table_name"]) for f in findings] == [
        ("missing_trigger", "parts.observations")
    ]
    assert "parts.observations_high_b" in findings[0]["detail"]

    # What the daemon and install run.
    actions = db.sql("SELECT * FROM simtrail.sync(true)")
    assert [(a["action"], a["table_name"]) for a in actions] == [("refresh", "parts.observations")]
    since = last_id(db)
    db.sql(
        "INSERT INTO parts.observations_high_b (id, tenant_id, patient_id, value)"
        " VALUES (2500, %s, %s, 1)",
        (tenant, patient),
    )
    assert logged_ops(db, since) == {("parts.observations", "INSERT"): 1}
    result = invoke(db.dsn, "doctor", "--json")
    assert (result.exit_code, json.loads(result.stdout)["findings"]) == (0, [])


def test_configuring_a_partition_itself_is_a_config_problem(parts_db: Database) -> None:
    db = parts_db
    db.sql(
        "INSERT INTO public.simulation_table_config (table_name, category, has_tenant_id,"
        " delete_order) VALUES ('parts.observations_low', 'test', true, 1)"
    )
    problems = db.sql("SELECT * FROM simtrail.config_problems()")
    assert [(p["table_name"], p["problem"]) for p in problems] == [
        (
            "parts.observations_low",
            "parts.observations_low is a partition; configure its partitioned table"
            " parts.observations instead",
        )
    ]
