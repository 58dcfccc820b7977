"""`simtrail demo`: a class of nursing students charting, captured end to end.

Builds the clinic schema in a fresh database, installs simtrail, seeds
three class sections, launches a fourth from the first with `clone`, copies
one of the template's patients into another class with `copy`, lets the
launched class's students chart as the application role a web app would use,
resets it, and prints what the log captured.
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
from simtrail.clinic import demo_audit, seed
from simtrail.daemon.settings import DaemonSettings
from simtrail.daemon.worker import Worker
from simtrail.db import connect, describe
from simtrail.errors import SimtrailError
from simtrail.sqlfile import query
from simtrail.triggers import copying, inspect, installer, rewinding

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
    export_dir: Path | None = None,
) -> dict[str, Any]:
    """The whole demo; on_connect hears which database it builds, before it starts.

    The class's compliance export goes to export_dir (default: beside datadir).
    """
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
            say(f"Seeded {len(tenants)} class sections with 6 patients each")

            doctor = inspect.doctor(conn)
            say(f"simtrail doctor: {'clean' if doctor['ok'] else doctor['findings']}")

            # The first section is the template; the class the students use is
            # launched from it, as the app's launch_simulation would.
            template = str(tenants[0])
            launched_id = uuid.UUID(int=rng.getrandbits(128), version=4)
            conn.execute(
                q("new_tenant"), {"id": launched_id, "name": f"{names[tenants[0]]} (launched)"}
            )
            names[launched_id] = f"{names[tenants[0]]} (launched)"
            conn.execute(q("set_actor"), {"actor": "demo: instructor launch"})
            clone_report = copying.clone(conn, template, str(launched_id))
            launch = launch_summary(conn, template, str(launched_id), clone_report)
            say(
                f"simtrail clone: launched {names[launched_id]} from the template, "
                f"{clone_report['totals']['rows']} rows with new ids, "
                f"{clone_report['totals']['references_remapped']} references remapped, "
                f"{launch['wristbands_renewed']} wristbands renewed, marked "
                f"'{clone_report['mark']}' in {clone_report['copy_ms']} ms"
            )

            # A patient of the template goes to another class too, with everything charted on it.
            duplicate = duplicate_patient(conn, template, str(tenants[2]))
            say(
                f"simtrail copy: duplicated patient {duplicate['mrn']} into "
                f"{names[tenants[2]]} ({duplicate['rows']} rows, new id {duplicate['new_id']})"
            )

            section = str(launched_id)
            others = [str(t) for t in tenants]
            launched = rewinding.tenant_state(conn, section)

            last = conn.execute(q("last_change")).fetchone()
            since = last["id"] if last else 0
            # Another class charts at the same time; the reset must not touch it.
            with as_student(conn, tenants[1], "m.okafor@students.example.edu"):
                seed.student_session(conn, tenants[1], rng=rng)
            conn.execute(q("set_actor"), {"actor": "demo: student session"})
            with as_student(conn, launched_id, "j.rivera@students.example.edu"):
                counts = seed.student_session(conn, launched_id, rng=rng)
            say(
                f"Students charted in {names[launched_id]}: "
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
        audit = demo_audit.export_and_verify(
            db_dsn, section, export_dir or datadir.parent / "demo-export", say
        )
    return {
        "tenants": [str(t) for t in tenants],
        "launched": section,
        "launch": launch,
        "duplicate": duplicate,
        "session": summary,
        "cascade_example": cascades,
        "status": status,
        "rewind": rewind_report,
        "compaction": compaction,
        "proof": proof,
        "audit": audit,
        "reset_exact": all(p["equal"] for p in proof),
        "launch_exact": launch["exact"],
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


def launch_summary(
    conn: psycopg.Connection[Any], template: str, launched: str, report: dict[str, Any]
) -> dict[str, Any]:
    """Per table: rows in the template and in the launched class, ids shared, and
    whether the copy matches the template once keys are mapped (diff --against)."""
    counts = {
        r["table_name"]: r for r in conn.execute(q("launch_counts"), {"a": template, "b": launched})
    }
    diff = conn.execute(q("diff_against"), {"clone": launched, "template": template}).fetchone()
    assert diff is not None
    differing = diff["report"]["totals"]
    wristbands = conn.execute(q("wristbands_shared"), {"a": template, "b": launched}).fetchone()
    assert wristbands is not None
    exact = (
        all(
            c["template_rows"] == c["launched_rows"] and c["ids_shared"] == 0
            for c in counts.values()
        )
        and not any(differing.values())
        and wristbands["shared"] == 0
    )
    return {
        "tables": list(counts.values()),
        "diff_against_template": differing,
        "wristbands_renewed": wristbands["renewed"],
        "copy_id": report["copy_id"],
        "exact": exact,
    }


def duplicate_patient(conn: psycopg.Connection[Any], template: str, target: str) -> dict[str, Any]:
    row = conn.execute(q("first_patient"), {"tenant": template}).fetchone()
    assert row is not None
    report = copying.copy_subtree(conn, "patients", {"id": str(row["id"])}, target)
    return {
        "mrn": row["patient_id"],
        "rows": report["totals"]["rows"],
        "new_id": report["new_key"]["id"],
        "tables": {name: t["rows"] for name, t in report["tables"].items()},
    }


def session_summary(conn: psycopg.Connection[Any], since: int, tenant: str) -> list[dict[str, Any]]:
    """What the students' session changed in one class, per table and operation."""
    return [dict(r) for r in conn.execute(q("session_summary"), {"since": since, "tenant": tenant})]


def cascade_example(conn: psycopg.Connection[Any], since: int) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(q("cascade_example"), {"since": since})]


def q(name: str) -> sql.SQL:
    return query("simtrail.clinic", "demo.sql", name)
