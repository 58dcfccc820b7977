"""I10: no app role can block a class's writes or rewinds, compaction, healing,
installs or the daemon's leadership through simtrail's locks.

The attacks are run as `authenticated` (with a class of its own in its JWT
claims) and as `anon`: every advisory key simtrail ever used or that an app
role could see in pg_locks, held in a session; every simtrail lock table
locked or selected FOR UPDATE; and every app row the role can reach held
FOR UPDATE in an open transaction of its own class.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from simtrail.triggers import installer
from tests import rewindkit
from tests.conftest import Database
from tests.daemonkit import eventually, running

APP_ROLES = ["authenticated", "anon"]
# Keys the releases before schema version 5 used, and near guesses of them.
OLD_KEYS = [
    "hashtextextended('simtrail tenant ' || %(victim)s, 0)",
    "hashtext('simtrail tenant ' || %(victim)s)",
    "hashtextextended('simtrail compaction', 0)",
    "hashtext('simtrail compaction')",
    "hashtext('simtrail.sync')",
    "hashtextextended('simtrail.sync', 0)",
    "hashtext('simtrail.install')",
    "hashtextextended('simtrail daemon leader', 0)",
    "hashtext('simtrail.rebase')",
]
# What a victim's statement may take, at most, while the attack is on.
BOUND_S = 3.0
Conn = psycopg.Connection[dict[str, Any]]


def app_session(db: Database, role: str, tenant: str | None, *, autocommit: bool) -> Conn:
    """A session that is the app role for good, as PostgREST would make it."""
    conn = psycopg.connect(db.dsn, autocommit=True, row_factory=dict_row)
    claims = {"role": role, "sub": f"attacker-{role}"}
    if tenant is not None:
        claims["tenant_id"] = tenant
    conn.execute("SELECT set_config('request.jwt.claims', %s, false)", (json.dumps(claims),))
    conn.execute(f"SET ROLE {role}")  # role names are the constants above
    conn.autocommit = autocommit
    return conn


def refused(conn: Conn, statement: str) -> str | None:
    """Run one statement in a savepoint; the SQLSTATE it failed with, or None."""
    try:
        with conn.transaction():
            conn.execute(statement.encode())
    except psycopg.Error as exc:
        return exc.sqlstate
    return None


def observed_keys(db: Database, role: str, victim: str) -> list[int]:
    """Every advisory key the app role can see held while one of the victim's
    writes is open: what a secret key would leak."""
    patient = db.sql(
        "SELECT id::text FROM public.patients WHERE tenant_id = %s LIMIT 1", (victim,)
    )[0]["id"]
    with psycopg.connect(db.dsn) as writer, app_session(
        db, role, None, autocommit=True
    ) as spy:
        writer.execute(
            "INSERT INTO public.patient_vitals (tenant_id, patient_id, heart_rate)"
            " VALUES (%s, %s, 77)",
            (victim, patient),
        )
        rows = spy.execute(
            "SELECT (classid::bigint << 32) | objid::bigint AS key FROM pg_locks"
            " WHERE locktype = 'advisory' AND objsubid = 1"
        ).fetchall()
        writer.rollback()
    return [int(r["key"]) for r in rows]


@contextmanager
def attack(db: Database, role: str, victim: str, own: str | None) -> Iterator[list[int]]:
    """Hold everything an app role can hold; yields the advisory keys it holds."""
    keys = observed_keys(db, role, victim)
    with ExitStack() as stack:
        locker = stack.enter_context(app_session(db, role, own, autocommit=True))
        held: list[int] = []
        for expression in OLD_KEYS:
            row = locker.execute(
                f"SELECT {expression} AS key, pg_try_advisory_lock({expression}) AS got".encode(),
                {"victim": victim},
            ).fetchone()
            assert row is not None and row["got"], expression  # advisory locks are open to all
            held.append(int(row["key"]))
        for seen in keys:
            locker.execute("SELECT pg_try_advisory_lock(%s)", (seen,))
            held.append(seen)

        # An open transaction holding what the role can reach: simtrail's
        # tables (refused), and its own class's rows (allowed, and its own).
        holder = stack.enter_context(app_session(db, role, own, autocommit=False))
        for statement in (
            "LOCK TABLE simtrail.tenant_locks IN ACCESS EXCLUSIVE MODE",
            "LOCK TABLE simtrail.locks IN ACCESS EXCLUSIVE MODE",
            "LOCK TABLE simtrail.daemon_lease IN ACCESS EXCLUSIVE MODE",
            "LOCK TABLE simtrail.changes IN ACCESS EXCLUSIVE MODE",
            "SELECT * FROM simtrail.tenant_locks FOR UPDATE",
            "SELECT * FROM simtrail.locks FOR UPDATE",
            "SELECT * FROM simtrail.daemon_lease FOR UPDATE",
            "SELECT simtrail.lock_tenant('x')",
            "SELECT simtrail.take_lock('compaction')",
            "SELECT simtrail.hold_tenants(ARRAY['x'])",
            "SELECT simtrail.add_tenant_locks(ARRAY['x'])",
            "SELECT * FROM public.tenants FOR KEY SHARE",
        ):
            assert refused(holder, statement) == "42501", statement
        if own is not None:
            reached = holder.execute("SELECT id FROM public.patients FOR UPDATE").fetchall()
            assert reached  # its own class's patients, and only those (RLS)
            holder.execute(
                "INSERT INTO public.patient_notes (tenant_id, patient_id, note_type, content)"
                " SELECT tenant_id, id, 'nursing', 'held open' FROM public.patients LIMIT 1"
            )
        yield held
        holder.rollback()


def within_bound(blocked: list[str], what: str, conn: Conn, statement: str,
                 params: Any = None) -> Any:
    """Run one statement under the bound; note it in `blocked` if it did not finish."""
    started = time.monotonic()
    try:
        cursor = conn.execute(statement.encode(), params)
        row = cursor.fetchone() if cursor.description else None
    except (psycopg.errors.QueryCanceled, psycopg.errors.LockNotAvailable):
        blocked.append(what)
        return None
    if time.monotonic() - started > BOUND_S / 2:
        blocked.append(f"{what} (slow)")
    return row


@pytest.mark.parametrize("role", APP_ROLES)
def test_an_app_role_cannot_block_another_class(seeded_db: Database, role: str) -> None:
    db = seeded_db
    own, victim = rewindkit.tenants(db)[:2]
    rewindkit.mark(db, victim, "start")
    start = rewindkit.state(db, victim)
    patient = db.sql(
        "SELECT id::text FROM public.patients WHERE tenant_id = %s ORDER BY id LIMIT 1", (victim,)
    )[0]["id"]
    timeout = f"-c statement_timeout={int(BOUND_S * 1000)}"
    blocked: list[str] = []

    with attack(db, role, victim, own if role == "authenticated" else None), psycopg.connect(
        db.dsn, autocommit=True, row_factory=dict_row, options=timeout
    ) as owner, app_session(db, "authenticated", victim, autocommit=True) as student:
        student.execute(f"SET statement_timeout = {int(BOUND_S * 1000)}")
        # The victim class's students chart as usual, each statement at once.
        for what, statement, params in (
            ("insert", "INSERT INTO public.patient_vitals (tenant_id, patient_id, heart_rate)"
             " VALUES (%s, %s, 88)", (victim, patient)),
            ("update", "UPDATE public.patients SET room_number = 'B-2' WHERE id = %s",
             (patient,)),
            ("delete", "DELETE FROM public.patient_vitals WHERE heart_rate = 88", None),
        ):
            within_bound(blocked, what, student, statement, params)
        # Its instructor's rewind goes through on its first attempt.
        report = within_bound(blocked, "rewind", owner,
                              "SELECT simtrail.rewind(%s, 'mark:start', false) AS r", (victim,))
        if report is not None:
            assert report["r"]["attempts"] == 1
        # Compaction, healing and installs do not wait either.
        within_bound(blocked, "compaction", owner,
                     "SELECT simtrail.compact_batch(interval '0', 1000)")
        within_bound(blocked, "sync", owner, "SELECT * FROM simtrail.sync(true)")
        with psycopg.connect(db.dsn, autocommit=True, row_factory=dict_row,
                             options=timeout) as conn:
            try:
                installer.install(conn)
            except psycopg.errors.QueryCanceled:
                blocked.append("install")
    assert blocked == [], blocked
    assert rewindkit.state(db, victim) == start


def test_simtrail_takes_no_advisory_lock(seeded_db: Database) -> None:
    """So no key, old, guessed or read from pg_locks, can get in its way."""
    db = seeded_db
    tenant = rewindkit.tenants(db)[0]
    rewindkit.mark(db, tenant, "m")
    bodies = db.sql(
        "SELECT p.proname FROM pg_proc p WHERE p.pronamespace = 'simtrail'::regnamespace"
        " AND p.prosrc ILIKE '%%advisory%%'"
    )
    assert bodies == []
    with psycopg.connect(db.dsn) as conn:
        conn.execute("UPDATE public.patients SET room_number = 'x' WHERE tenant_id = %s", (tenant,))
        conn.execute("SELECT simtrail.rewind(%s, 'mark:m', false)", (tenant,))
        conn.execute("SELECT simtrail.compact_batch(interval '0', 1000)")
        conn.execute("SELECT * FROM simtrail.sync(true)")
        conn.execute("SELECT simtrail.tick()")
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        ).fetchone()
        assert row == (0,)
        # What it does hold: its tenant's row, exclusively, and nobody else's.
        with psycopg.connect(db.dsn) as other:
            probe = "SELECT FROM simtrail.tenant_locks WHERE tenant_id = %s FOR UPDATE NOWAIT"
            with pytest.raises(psycopg.errors.LockNotAvailable):
                other.execute(probe, (tenant,))
            other.rollback()
            for free in rewindkit.tenants(db)[1:]:
                other.execute(probe, (free,))


def test_an_app_role_holding_its_own_class_open_delays_only_that_class(
    seeded_db: Database,
) -> None:
    """The one thing an app role can still do: keep a write of its own class
    open. The rewind of that class then gives up after its retries, with a
    clear error, instead of waiting for ever; other classes are not touched."""
    db = seeded_db
    own, other = rewindkit.tenants(db)[:2]
    for tenant in (own, other):
        rewindkit.mark(db, tenant, "m")
    with app_session(db, "authenticated", own, autocommit=False) as student:
        student.execute(
            "INSERT INTO public.patient_notes (tenant_id, patient_id, note_type, content)"
            " SELECT tenant_id, id, 'nursing', 'open' FROM public.patients LIMIT 1"
        )
        started = time.monotonic()
        report = rewindkit.rewind(db, other, "mark:m")
        assert report["attempts"] == 1 and time.monotonic() - started < BOUND_S
        started = time.monotonic()
        with pytest.raises(psycopg.errors.LockNotAvailable, match="stayed busy through 10"):
            rewindkit.rewind(db, own, "mark:m")
        waited = time.monotonic() - started
        # Ten tries, 200 ms each, with jittered back-off between them.
        assert 5 < waited < 25, waited
        student.rollback()
    assert rewindkit.rewind(db, own, "mark:m")["attempts"] == 1


def test_first_writers_of_a_new_class_do_not_fail(installed_db: Database) -> None:
    """A tenant's lock row is made by its first write; a second writer racing
    it waits for that commit and goes on, and both writes are captured."""
    db = installed_db
    tenant = db.sql("INSERT INTO public.tenants (name) VALUES ('new') RETURNING id::text")[0]["id"]
    insert = (
        "INSERT INTO public.patients (tenant_id, patient_id, first_name, last_name,"
        " date_of_birth) VALUES (%s, %s, 'A', 'B', '2000-01-01')"
    )
    with psycopg.connect(db.dsn) as first, psycopg.connect(db.dsn, autocommit=True) as second:
        first.execute(insert, (tenant, "WB-new-1"))
        assert db.sql("SELECT count(*) AS n FROM simtrail.tenant_locks WHERE tenant_id = %s",
                      (tenant,))[0]["n"] == 0
        errors: list[BaseException] = []

        def write() -> None:
            try:
                second.execute(insert, (tenant, "WB-new-2"))
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=write)
        thread.start()
        time.sleep(0.3)
        first.commit()
        thread.join(10)
    assert errors == []
    logged = db.sql(
        "SELECT count(*) AS n FROM simtrail.changes WHERE tenant_id = %s AND table_name ="
        " 'public.patients'", (tenant,)
    )
    assert logged[0]["n"] == 2
    assert db.sql("SELECT tenant_id FROM simtrail.tenant_locks WHERE tenant_id = %s",
                  (tenant,)) == [{"tenant_id": tenant}]


def test_the_daemon_leads_while_an_app_role_holds_every_key(
    installed_db: Database, tmp_path: Path
) -> None:
    db = installed_db
    with app_session(db, "anon", None, autocommit=True) as anon:
        for key in OLD_KEYS:
            anon.execute(f"SELECT pg_try_advisory_lock({key})".encode(), {"victim": "x"})
        assert refused(anon, "UPDATE simtrail.daemon_lease SET expires_at = 'infinity'") == "42501"
        with running(db.dsn, tmp_path, "--tick-interval", "200ms", "--poll-interval", "200ms",
                     "--lease-ttl", "2s", "--lease-retry", "500ms") as daemon:
            eventually(lambda: daemon.role() == "leader", timeout=10, what="leader")
            eventually(
                lambda: db.sql("SELECT count(*) AS n FROM simtrail.ticks")[0]["n"] > 0,
                timeout=10, what="the leader ticks",
            )


def test_a_frozen_leader_loses_the_lease_when_it_expires(
    installed_db: Database, tmp_path: Path
) -> None:
    """Patroni's rule: a leader whose session lives on but who stops renewing
    (here: SIGSTOP) is replaced once its lease expires, and steps down when
    it wakes, because its renewal finds the lease taken."""
    db = installed_db
    fast = ("--tick-interval", "200ms", "--poll-interval", "200ms",
            "--lease-ttl", "2s", "--lease-retry", "500ms")
    with running(db.dsn, tmp_path, *fast, name="first") as first:
        eventually(lambda: first.role() == "leader", timeout=10, what="first leads")
        with running(db.dsn, tmp_path, *fast, name="second") as second:
            eventually(lambda: second.role() == "standby", timeout=10, what="second stands by")
            first.signal(signal.SIGSTOP)
            frozen = time.monotonic()
            try:
                eventually(lambda: second.role() == "leader", timeout=10, what="takeover")
                # Not before the lease ran out: the frozen leader's session was alive.
                assert time.monotonic() - frozen > 1.0
            finally:
                first.signal(signal.SIGCONT)
            eventually(lambda: first.role() == "standby", timeout=10, what="first steps down")
            assert first.events("lost leadership; standing by")
            assert second.role() == "leader"
            holder = db.sql("SELECT holder FROM simtrail.daemon_lease")[0]["holder"]
            assert holder.split(" pid ")[1].split()[0] == str(second.pid)


def test_a_repeatable_read_writer_never_writes_without_the_lock(installed_db: Database) -> None:
    """Under REPEATABLE READ a lock row made after the snapshot cannot be
    locked: the write fails with a serialization failure (which such a
    transaction must retry anyway) instead of going ahead unlocked."""
    db = installed_db
    tenant = db.sql("INSERT INTO public.tenants (name) VALUES ('rr') RETURNING id::text")[0]["id"]
    insert = (
        "INSERT INTO public.patients (tenant_id, patient_id, first_name, last_name,"
        " date_of_birth) VALUES (%s, %s, 'A', 'B', '2000-01-01')"
    )
    with psycopg.connect(db.dsn) as late:
        late.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        late.execute("SELECT 1")  # the snapshot is taken here
        db.sql(insert, (tenant, "WB-rr-1"))  # the tenant's first write makes its lock row
        with pytest.raises(psycopg.errors.SerializationFailure):
            late.execute(insert, (tenant, "WB-rr-2"))
        late.rollback()
        late.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        late.execute(insert, (tenant, "WB-rr-2"))
        late.commit()
    logged = db.sql(
        "SELECT count(*) AS n FROM simtrail.changes WHERE tenant_id = %s", (tenant,)
    )
    assert logged[0]["n"] == 2
