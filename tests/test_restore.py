"""A pg_dump of the application's database restored into a fresh cluster (an
embedded PostgreSQL 16): capture goes on, rewinds to marks taken before and
after the restore are exact, install is idempotent and doctor is clean.

The new cluster's transaction ids start far below the restored log's, and
every table gets a new OID: the two things simtrail must rebase.
"""

from __future__ import annotations

import random
import re
import subprocess
import tempfile
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from simtrail.clinic import seed
from simtrail.db import connect
from simtrail.triggers import inspect, installer
from tests import rewindkit
from tests.conftest import Database
from tests.servers import _start_embedded

# Above the new cluster's next xid by this much, every restored change's xid
# is one the new cluster has not reached yet: the case that broke marks.
_XID_MARGIN = 3000


def _bin(name: str) -> str:
    # pgserver ships PostgreSQL 16 client tools: they dump a 15 or 16 server.
    import pgserver

    return str(Path(pgserver.__file__).parent / "pginstall" / "bin" / name)


def _sql(conn: psycopg.Connection[Any], query: str, params: Any = None) -> list[dict[str, Any]]:
    cur = conn.execute(query.encode(), params)
    return cur.fetchall() if cur.description else []


def _next_xid(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text").fetchone()
        assert row is not None
        return int(row[0])


def _burn_xids_above(dsn: str, floor: int) -> None:
    """Advance the server's xids past floor: each subtransaction that writes takes one."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        missing = floor - _next_xid(dsn)
        if missing > 0:
            conn.execute("CREATE TEMP TABLE burn (x integer)")
            conn.execute(
                sql.SQL(
                    "DO $$ BEGIN FOR i IN 1..{} LOOP BEGIN INSERT INTO burn VALUES (i);"
                    " EXCEPTION WHEN OTHERS THEN NULL; END; END LOOP; END $$"
                ).format(sql.Literal(missing))
            )


def _state(conn: psycopg.Connection[Any], tenant: str) -> dict[str, tuple[int, str]]:
    return {
        r["table_name"]: (int(r["row_count"]), r["checksum"])
        for r in _sql(conn, "SELECT * FROM simtrail.tenant_state(%s)", (tenant,))
    }


def _session(conn: psycopg.Connection[Any], tenant: str, seed_value: int) -> None:
    seed.student_session(conn, uuid.UUID(tenant), rng=random.Random(seed_value))


def _rewind(conn: psycopg.Connection[Any], tenant: str, target: str) -> dict[str, Any]:
    rows = _sql(conn, "SELECT simtrail.rewind(%s, %s, false, false) AS r", (tenant, target))
    report: dict[str, Any] = rows[0]["r"]
    return report


def test_dump_and_restore_into_a_fresh_cluster(seeded_db: Database) -> None:
    db = seeded_db
    tenant, other = rewindkit.tenants(db)[:2]
    with ExitStack() as stack:
        new_admin = _start_embedded(stack)
        _burn_xids_above(db.dsn, _next_xid(new_admin) + _XID_MARGIN)

        # Before the dump: a mark, a session, a daemon tick, more changes.
        rewindkit.mark(db, tenant, "m1")
        m1 = rewindkit.state(db, tenant)
        others = rewindkit.state(db, other)
        with psycopg.connect(db.dsn, autocommit=True, row_factory=dict_row) as conn:
            _session(conn, tenant, 1)
            _sql(conn, "SELECT simtrail.tick()")
            _sql(
                conn,
                "UPDATE public.patients SET room_number = 'OLD-1' WHERE tenant_id = %s",
                (tenant,),
            )
        old_max = int(db.sql("SELECT max(id) AS n FROM simtrail.changes")[0]["n"])
        # Sealed before the dump: the chains travel with it.
        db.sql("SELECT simtrail.seal_all(50000)")
        assert db.sql("SELECT simtrail.verify_chains(NULL, true) AS r")[0]["r"]["ok"] is True

        dump = Path(tempfile.mkdtemp(prefix="simtrail-dump-")) / "app.dump"
        subprocess.run([_bin("pg_dump"), "-Fc", "-f", str(dump), "-d", db.dsn], check=True)
        with psycopg.connect(new_admin, autocommit=True) as conn:
            conn.execute("CREATE DATABASE app")
            for role in ("anon", "authenticated"):
                conn.execute(f"CREATE ROLE {role} NOLOGIN")
        new_dsn = psycopg.conninfo.make_conninfo(new_admin, dbname="app")
        script = subprocess.run(
            [_bin("pg_restore"), "--no-owner", "-f", "-", str(dump)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        # This machine's PostgreSQL 15 build keeps a private attribute option
        # that stock servers reject; it has nothing to do with simtrail.
        script = re.sub(r"(?m)^ALTER TABLE ONLY .* SET \(pg_attver=\d+\);$", "", script)
        subprocess.run(
            [_bin("psql"), "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "-d", new_dsn],
            input=script,
            check=True,
            capture_output=True,
            text=True,
        )

        with connect(new_dsn, "test") as conn:
            [unrebased] = inspect.doctor(conn)["findings"]
            assert (unrebased["severity"], unrebased["kind"]) == ("error", "rebase")
            assert "run `simtrail install`" in unrebased["detail"]

        with psycopg.connect(new_dsn, autocommit=True, row_factory=dict_row) as conn:
            # The application writes before anything of simtrail has run.
            _sql(
                conn,
                "UPDATE public.patients SET room_number = 'NEW-1' WHERE tenant_id = %s",
                (tenant,),
            )
            new_first = int(_sql(conn, "SELECT max(id) AS n FROM simtrail.changes")[0]["n"])
            assert new_first > old_max, "capture goes on in the new cluster"

            # Nothing is sealed on xids of another cluster before the rebase.
            unrebased = _sql(conn, "SELECT simtrail.seal_batch(1000) AS r")[0]["r"]
            assert unrebased["rebase_needed"] is True and unrebased["sealed"] == 0
            _sql(conn, "SELECT simtrail.mark(%s, 'm2')", (tenant,))
            m2 = _state(conn, tenant)
            _session(conn, tenant, 2)
            _sql(conn, "SET simtrail.actor = 'after restore'")
            _sql(
                conn,
                "UPDATE public.patients SET room_number = 'NEW-2' WHERE tenant_id = %s",
                (tenant,),
            )

        with connect(new_dsn, "test") as conn:
            first = installer.install(conn)
            assert [a["action"] for a in first.actions] == []
            assert installer.install(conn).actions == []
            assert inspect.doctor(conn)["findings"] == []

        with psycopg.connect(new_dsn, autocommit=True, row_factory=dict_row) as conn:
            report = _rewind(conn, tenant, "mark:m2")
            assert report["totals"]["reverted"] > 0
            assert _state(conn, tenant) == m2
            _rewind(conn, tenant, "mark:m1")
            assert _state(conn, tenant) == m1
            assert _state(conn, other) == others
            # Undo the undo: back to m2, across both generations.
            _rewind(conn, tenant, "mark:m2")
            assert _state(conn, tenant) == m2

            generations = _sql(
                conn,
                "SELECT generation, first_change_id, ambiguous"
                " FROM simtrail.clusters ORDER BY generation",
            )
            assert [(g["generation"], g["ambiguous"]) for g in generations] == [(1, 0), (2, 0)]
            assert old_max < generations[1]["first_change_id"] <= new_first

            # The first seal of the new generation sweeps both clusters'
            # unsealed changes, and every chain verifies across the restore.
            _sql(conn, "SELECT simtrail.seal_all(50000)")
            check = _sql(conn, "SELECT simtrail.verify_chains(NULL, true) AS r")[0]["r"]
            assert check["ok"] is True, check
            unsealed = _sql(
                conn,
                "SELECT count(*) AS n FROM simtrail.chain_originals(NULL, true) AS o"
                " WHERE NOT EXISTS (SELECT 1 FROM simtrail.seals AS s WHERE s.change_id = o.id)",
            )
            assert unsealed[0]["n"] == 0

            # Actors: an old change keeps its own, a new one gets its own.
            actors = _sql(
                conn,
                "SELECT c.id > %s AS new, c.actor ->> 'actor' AS actor, c.actor IS NULL AS missing"
                " FROM simtrail.simulation_tenant_changes AS c WHERE c.tenant_id = %s",
                (old_max, tenant),
            )
            assert not any(a["missing"] for a in actors if not a["new"])
            assert "after restore" in {a["actor"] for a in actors if a["new"]}


@pytest.mark.parametrize("changed", ["oid", "xid"])
def test_a_new_cluster_is_noticed(installed_db: Database, changed: str) -> None:
    """Either sign alone starts a new generation: the stored anchor OID, or
    transaction ids below those already seen."""
    db = installed_db
    if changed == "oid":
        db.sql("UPDATE simtrail.clusters SET anchor_oid = 1")
    else:
        db.sql("UPDATE simtrail.clusters SET seen_xmin = '999999999999'::xid8")
    assert db.sql("SELECT simtrail.cluster_changed() AS c")[0]["c"] is True
    db.sql("SELECT simtrail.tick()")
    rows = db.sql("SELECT generation FROM simtrail.clusters ORDER BY 1")
    assert [r["generation"] for r in rows] == [1, 2]
    assert db.sql("SELECT generation FROM simtrail.ticks")[0]["generation"] == 2
    assert db.sql("SELECT simtrail.cluster_changed() AS c")[0]["c"] is False


def test_changes_the_xids_cannot_place_are_counted_and_reported(seeded_db: Database) -> None:
    """A restore noticed only after the new cluster's xids passed the old
    ones: changes after the last look cannot be placed; doctor says so."""
    db = seeded_db
    db.sql("UPDATE simtrail.clusters SET anchor_oid = 1, seen_change_id = 1, seen_xmin = '3'::xid8")
    logged = rewindkit.log_size(db)
    done = db.sql("SELECT simtrail.rebase() AS r")[0]["r"]
    assert (done["generation"], done["first_change_id"], done["ambiguous"]) == (2, 1, logged)
    with connect(db.dsn, "test") as conn:
        findings = inspect.doctor(conn)["findings"]
    assert [(f["severity"], f["kind"]) for f in findings] == [("warning", "rebase")]
    assert findings[0]["detail"].startswith(f"{logged} change(s) captured around the move")
