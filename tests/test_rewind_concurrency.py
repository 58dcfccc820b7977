"""I2 under load: other classes keep writing during a rewind; the class's own
writers wait for it and then apply on top of the result."""

from __future__ import annotations

import threading
import time

import psycopg

from tests import rewindkit
from tests.conftest import Database


def test_rewind_while_every_class_keeps_writing(seeded_db: Database) -> None:
    db = seeded_db
    tenant, *others = rewindkit.tenants(db)
    rewindkit.mark(db, tenant, "launch")
    launched = rewindkit.state(db, tenant)
    # A session's worth of charting to undo.
    db.sql(
        "DELETE FROM public.patients WHERE id IN (SELECT id FROM public.patients"
        " WHERE tenant_id = %s ORDER BY id LIMIT 2)",
        (tenant,),
    )
    db.sql(
        "UPDATE public.patient_notes SET content = content || '!' WHERE tenant_id = %s", (tenant,)
    )

    stop = threading.Event()
    errors: list[BaseException] = []
    done: dict[str, int] = {}

    def writer(who: str, class_id: str, update_existing: bool) -> None:
        count = 0
        try:
            with psycopg.connect(db.dsn, autocommit=True, application_name=who) as conn:
                patient = conn.execute(
                    "SELECT id FROM public.patients WHERE tenant_id = %s ORDER BY id DESC LIMIT 1",
                    (class_id,),
                ).fetchone()
                assert patient is not None
                while not stop.is_set():
                    with conn.transaction():
                        conn.execute(
                            "INSERT INTO public.patient_vitals (tenant_id, patient_id, heart_rate,"
                            " blood_pressure) VALUES (%s, %s, %s, %s)",
                            (class_id, patient[0], 60 + count % 40, f"{who}-{count}"),
                        )
                        if update_existing:
                            # Rows the rewind also needs: it must give way and retry.
                            conn.execute(
                                "UPDATE public.patients SET room_number = %s WHERE id = %s",
                                (f"{who}-{count}", patient[0]),
                            )
                    count += 1
        except BaseException as exc:
            errors.append(exc)
        finally:
            done[who] = count

    threads = [
        threading.Thread(target=writer, args=(f"other-{i}", others[i % len(others)], i == 0))
        for i in range(3)
    ]
    threads.append(threading.Thread(target=writer, args=("same-class", tenant, True)))
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    report = rewindkit.rewind(db, tenant, "mark:launch")
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join(30)

    assert errors == []
    # Every write of the other classes committed, and the rewind touched none of them.
    for i in range(3):
        who = f"other-{i}"
        assert done[who] > 0
        rows = db.sql(
            "SELECT count(*) AS n FROM public.patient_vitals WHERE blood_pressure LIKE %s",
            (f"{who}-%",),
        )
        assert rows[0]["n"] == done[who]
    touched = db.sql(
        "SELECT DISTINCT c.tenant_id FROM simtrail.changes c"
        " JOIN simtrail.transactions x USING (xact_id) WHERE x.rewind_id = %s",
        (report["rewind_id"],),
    )
    assert touched == [{"tenant_id": tenant}]
    # The class's own writer waited and wrote on top: undoing only what came
    # after the rewind gives back exactly the launch state.
    last = db.sql(
        "SELECT max(c.id) AS id FROM simtrail.changes c JOIN simtrail.transactions x"
        " USING (xact_id) WHERE x.rewind_id = %s",
        (report["rewind_id"],),
    )[0]["id"]
    assert done["same-class"] > 0
    rewindkit.rewind(db, tenant, f"change:{last}")
    assert rewindkit.state(db, tenant) == launched
