"""An upgrade from the last release keeps a populated log and every rewind's result.

The database is made by that release itself (tests/legacy: its install script,
built from git by tests/legacy/build.py): its capture writes the history, its
compaction folds part of it, its rewinds give the expected states. Then this
release's installer upgrades it in place, and the same rewinds must give the
same states, the log must hold the same rows, and the upgraded install must
keep capturing.
"""

from __future__ import annotations

import gzip
import random
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from simtrail.clinic import seed
from simtrail.db import connect
from simtrail.triggers import installer
from tests import rewindkit
from tests.conftest import Database
from tests.test_compaction import compact, patient_of, tick

RELEASE = Path(__file__).parent / "legacy" / "release_v11.sql.gz"
RELEASE_VERSION = 11

LOG_COLUMNS = (
    "id, tenant_id, table_name, operation, row_pk, old_pk, old_data, new_data,"
    " xact_id::text AS xact_id, changed_at, moved, net_from, net_count"
)


def install_release(db: Database) -> None:
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        conn.execute(gzip.decompress(RELEASE.read_bytes()).decode())
        seed.seed_tenants(conn, tenants=3, patients_per_tenant=4, rng=random.Random(11))


def write_history(db: Database, tenants: list[str]) -> dict[tuple[str, str], Any]:
    """Sessions in every class; the state of each class at each of its marks,
    read from the live tables as the mark is taken."""
    first, second, third = tenants
    states: dict[tuple[str, str], Any] = {}

    def mark(tenant: str, name: str) -> None:
        rewindkit.mark(db, tenant, name)
        states[(tenant, f"mark:{name}")] = rewindkit.state(db, tenant)

    for tenant in tenants:
        mark(tenant, "launch")
    moving = patient_of(db, second, 1)
    for round_ in range(3):
        for tenant in tenants:
            db.sql(
                "UPDATE public.patient_vitals SET heart_rate = 60 + %s"
                " WHERE tenant_id = %s AND id IN (SELECT id FROM public.patient_vitals"
                " WHERE tenant_id = %s ORDER BY id LIMIT 5)",
                (round_, tenant, tenant),
            )
        db.sql(
            "UPDATE public.patients SET room_number = %s WHERE tenant_id = %s",
            (f"R{round_}", first),
        )
    tick(db)
    mark(first, "mid")
    # A discharge (a cascade through the patient's charting), a patient that
    # changes class, and a key change.
    db.sql("DELETE FROM public.patients WHERE id = %s", (patient_of(db, first),))
    db.sql("UPDATE public.patients SET tenant_id = %s WHERE id = %s", (third, moving))
    db.sql(
        "UPDATE public.patient_care_team SET user_id = (SELECT u.id FROM public.user_profiles u"
        " WHERE NOT EXISTS (SELECT 1 FROM public.patient_care_team c"
        " WHERE c.patient_id = t.patient_id AND c.user_id = u.id) ORDER BY u.id LIMIT 1)"
        " FROM (SELECT patient_id, user_id FROM public.patient_care_team"
        " WHERE tenant_id = %s ORDER BY patient_id, user_id LIMIT 1) AS t"
        " WHERE patient_care_team.patient_id = t.patient_id"
        " AND patient_care_team.user_id = t.user_id",
        (second,),
    )
    tick(db)
    db.sql("UPDATE public.patient_vitals SET heart_rate = 99 WHERE tenant_id = %s", (second,))
    mark(second, "late")
    db.sql("DELETE FROM public.patient_notes WHERE tenant_id = %s", (second,))
    tick(db)
    return states


def rewound_state(db: Database, tenant: str, target: str) -> Any:
    """The tenant's state after a rewind to target, in a transaction rolled
    back; or the SQLSTATE and message it was refused with."""
    with psycopg.connect(db.dsn, row_factory=dict_row) as conn:
        try:
            conn.execute("SELECT simtrail.rewind(%s, %s, false, false)", (tenant, target))
        except psycopg.Error as exc:
            return ("refused", exc.sqlstate, str(exc).splitlines()[0])
        rows = conn.execute("SELECT * FROM simtrail.tenant_state(%s)", (tenant,)).fetchall()
        conn.rollback()
    return {r["table_name"]: (int(r["row_count"]), r["checksum"]) for r in rows}


def test_an_upgrade_from_the_last_release_keeps_the_log_and_every_rewind(
    clinic_db: Database,
) -> None:
    db = clinic_db
    install_release(db)
    assert db.sql("SELECT max(version) AS v FROM simtrail.schema_version")[0]["v"] == (
        RELEASE_VERSION
    )
    tenants = rewindkit.tenants(db)
    states_at_marks = write_history(db, tenants)
    targets = list(states_at_marks)
    folded = compact(db)
    assert folded["net"] > 0 and folded["archived"] > folded["net"]

    before = {t: rewound_state(db, *t) for t in targets}
    # The patient that changed class: rewinding either class to before the
    # move would change the other one, so both rewinds are refused.
    refused = {t for t, got in before.items() if isinstance(got, tuple)}
    assert refused == {(tenants[1], "mark:launch"), (tenants[2], "mark:launch")}
    assert {before[t][1] for t in refused} == {"55000"}
    for target in set(targets) - refused:
        assert before[target] == states_at_marks[target], target
    log_before = db.sql(f"SELECT {LOG_COLUMNS} FROM simtrail.changes ORDER BY id")
    archive_before = db.sql("SELECT count(*) AS n FROM simtrail.archive")[0]["n"]
    live_before = rewindkit.all_states(db)

    with connect(db.dsn, "test upgrade") as conn:
        report = installer.install(conn)
    assert (report.from_version, report.to_version) == (
        RELEASE_VERSION,
        installer.latest_version(),
    )
    assert db.sql(f"SELECT {LOG_COLUMNS} FROM simtrail.changes ORDER BY id") == log_before
    assert db.sql("SELECT count(*) AS n FROM simtrail.archive")[0]["n"] == archive_before
    assert rewindkit.all_states(db) == live_before
    assert {t: rewound_state(db, *t) for t in targets} == before

    # Still capturing, and a rewind across the upgrade undoes both sides of it.
    first = tenants[0]
    db.sql("UPDATE public.patients SET room_number = 'after' WHERE tenant_id = %s", (first,))
    rewindkit.rewind(db, first, "mark:mid")
    assert rewindkit.state(db, first) == states_at_marks[(first, "mark:mid")]

