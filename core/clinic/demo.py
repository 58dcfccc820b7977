"""`simtrail demo`: a class of nursing students charting, captured end to end.

Builds the clinic schema in a fresh database, installs simtrail, launches
three class sections, lets one section's students chart as the application
role a web app would use, and prints what the log captured.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from simtrail import embedded
from simtrail.clinic import seed
from simtrail.daemon.settings import DaemonSettings
from simtrail.daemon.worker import Worker
from simtrail.db import connect, describe
from simtrail.errors import SimtrailError
from simtrail.sqlfile import query
from simtrail.triggers import inspect, installer, rewinding

DEMO_DB = "simtrail_demo"
DEMO_COMMENT = "simtrail demo database; safe to drop"
Say = Callable[[str], None]


@contextmanager
def demo_server(dsn: str | None, datadir: Path, say: Say) -> Iterator[str]:
    """An admin DSN: the given server, or an embedded PostgreSQL 16."""
    with ExitStack() as stack:
        if dsn is None:
            say(f"No --dsn given: starting an embedded PostgreSQL in {datadir}")
            try:
                admin_dsn = embedded.start(datadir, stack)
            except OSError as exc:
                raise SimtrailError(
                    f"cannot start the embedded PostgreSQL in {datadir}: {exc.strerror or exc}"
                ) from None
            yield admin_dsn
        else:
            yield dsn


def fresh_database(
    admin_dsn: str, on_connect: Callable[[dict[str, Any]], None] = lambda _: None
) -> str:
    """(Re)create the demo database; refuse to drop one that is not ours."""
    with connect(admin_dsn, "demo") as conn:
        on_connect({**describe(conn), "database": DEMO_DB})
        row = conn.execute(q("database_note"), {"name": DEMO_DB}).fetchone()
        if row is not None:
            if row["note"] != DEMO_COMMENT:
                raise SimtrailError(
                    f"database {DEMO_DB} exists and was not made by the demo; not touching it"
                )
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(DEMO_DB)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DEMO_DB)))
        conn.execute(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                sql.Identifier(DEMO_DB), sql.Literal(DEMO_COMMENT)
            )
        )
    return make_conninfo(admin_dsn, dbname=DEMO_DB)


@contextmanager
def as_student(conn: psycopg.Connection[Any], tenant: uuid.UUID, email: str) -> Iterator[None]:
    """Act as the web app does: role `authenticated` with PostgREST's JWT claims."""
    claims = {
        "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, email)),
        "role": "authenticated",
        "email": email,
        "tenant_id": str(tenant),
    }
    conn.execute(q("set_claims"), {"claims": json.dumps(claims)})
    conn.execute("SET ROLE authenticated")
    try:
        yield
    finally:
        conn.execute("RESET ROLE")
        conn.execute(q("set_claims"), {"claims": ""})


def run(
    dsn: str | None,
    datadir: Path,
    say: Say,
    on_connect: Callable[[dict[str, Any]], None] = lambda _: None,
) -> dict[str, Any]:
    """The whole demo; on_connect hears which database it builds, before it starts."""
    rng = random.Random(2025)
    with demo_server(dsn, datadir, say) as admin_dsn:
        db_dsn = fresh_database(admin_dsn, on_connect)
        with connect(db_dsn, "demo") as conn:
            say(f"PostgreSQL {conn.info.server_version // 10000}: database {DEMO_DB}")
            seed.apply_schema(conn)
            made = conn.execute(q("public_tables")).fetchone()
            assert made is not None
            say(
                f"Clinic schema created: {made['n']} tables, RLS, updated_at stampers, cascades,"
                " references without FK"
            )

            report = installer.install(conn)
            seed.apply_copy_config(conn)
            say(
                f"simtrail install: schema v{report.to_version}, "
                f"{len(report.actions)} tables captured, references without FK declared"
            )

            tenants = seed.seed_tenants(conn, tenants=3, patients_per_tenant=6, rng=rng)
            names = {r["id"]: r["name"] for r in conn.execute(q("tenant_names"))}
            say(f"Launched {len(tenants)} class sections with 6 patients each")

            doctor = inspect.doctor(conn)
            say(f"simtrail doctor: {'clean' if doctor['ok'] else doctor['findings']}")

            section = str(tenants[0])
            others = [str(t) for t in tenants[1:]]
            conn.execute(q("set_actor"), {"actor": "demo: instructor"})
            rewinding.create_mark(conn, section, "launch")
            say(f"Instructor marked {names[tenants[0]]} as launched (mark 'launch')")
            launched = rewinding.tenant_state(conn, section)

            last = conn.execute(q("last_change")).fetchone()
            since = last["id"] if last else 0
            # Another class charts at the same time; the reset must not touch it.
            with as_student(conn, tenants[1], "m.okafor@students.example.edu"):
                seed.student_session(conn, tenants[1], rng=rng)
            conn.execute(q("set_actor"), {"actor": "demo: student session"})
            with as_student(conn, tenants[0], "j.rivera@students.example.edu"):
                counts = seed.student_session(conn, tenants[0], rng=rng)
            say(
                f"Students charted in {names[tenants[0]]}: "
                + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items() if v)
            )
            charted = rewinding.tenant_state(conn, section)
            others_before = {t: rewinding.tenant_state(conn, t) for t in others}
            summary = session_summary(conn, since, section)
            cascades = cascade_example(conn, since)

            compaction = compact_now(db_dsn)
            say(
                f"simtrail daemon, one cycle (fine window 0 for the demo): log "
                f"{compaction['before']} -> {compaction['after']} rows, "
                f"{compaction['archived']} originals archived"
            )

            conn.execute(q("set_actor"), {"actor": "demo: instructor reset"})
            rewind_report = rewinding.rewind(conn, section, "mark:launch")
            say(
                f"simtrail reset: undid {rewind_report['changes_undone']} changes in "
                f"{rewind_report['duration_ms']} ms"
            )
            reset_state = rewinding.tenant_state(conn, section)
            others_after = {t: rewinding.tenant_state(conn, t) for t in others}

            proof = [
                {
                    "table_name": name,
                    "launch": launched[name],
                    "after_session": charted[name],
                    "after_reset": reset_state[name],
                    "equal": launched[name] == reset_state[name],
                }
                for name in sorted(launched)
            ]
            status = inspect.status(conn)
    return {
        "tenants": [str(t) for t in tenants],
        "session": summary,
        "cascade_example": cascades,
        "status": status,
        "rewind": rewind_report,
        "compaction": compaction,
        "proof": proof,
        "reset_exact": all(p["equal"] for p in proof),
        "other_classes_untouched": others_before == others_after,
    }


def compact_now(dsn: str) -> dict[str, int]:
    """One daemon cycle that treats all history as old, so the demo shows
    compaction (and that the reset after it is still exact)."""
    with connect(dsn, "demo") as conn:
        before = conn.execute(q("log_rows")).fetchone()
        settings = DaemonSettings(dsn=dsn, fine_window=0.0, coarse_tick_interval=0.001)
        if Worker(settings).run(once=True) != 0:
            raise SimtrailError("the daemon's cycle failed; see the log above")
        after = conn.execute(q("log_rows")).fetchone()
    assert before is not None and after is not None
    return {"before": before["log"], "after": after["log"], "archived": after["archive"]}


def session_summary(conn: psycopg.Connection[Any], since: int, tenant: str) -> list[dict[str, Any]]:
    """What the students' session changed in one class, per table and operation."""
    return [dict(r) for r in conn.execute(q("session_summary"), {"since": since, "tenant": tenant})]


def cascade_example(conn: psycopg.Connection[Any], since: int) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(q("cascade_example"), {"since": since})]


def q(name: str) -> sql.SQL:
    return query("simtrail.clinic", "demo.sql", name)
