"""simtrail run as Supabase runs it (issue 8, item 12).

On Supabase nobody is a superuser. The `postgres` role owns the app tables,
may create schemas in the database, and may set session_replication_role
(PostgreSQL 15+: GRANT SET ON PARAMETER). The fixture builds such a role in a
fresh database, then install, a rewind and a daemon cycle run as it through
the real CLI. Without the SET grant, every rewind refuses, naming the grant.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from simtrail.clinic import seed
from tests.catalog import FIXTURE_TABLES, assert_one_line_error
from tests.conftest import Database, run_cli

_names = itertools.count()


@dataclass
class RoleDb:
    db: Database
    role: str
    dsn: str  # the database, as the role

    def sql(self, query: str, params: Any = None) -> list[dict[str, Any]]:
        """One statement as the role, in autocommit."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            cur = conn.execute(query.encode(), params)
            if not cur.description:
                return []
            names = [c.name for c in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def hand_over(db: Database, role: str) -> None:
    """Make `role` what Supabase's postgres is: owner of the app, not superuser."""
    ident = sql.Identifier(role)
    with db.server.admin() as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEROLE").format(ident))
        admin.execute(
            sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(sql.Identifier(db.name), ident)
        )
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        objects = conn.execute(
            "SELECT format('ALTER TABLE %s OWNER TO %%s', c.oid::regclass) FROM pg_class AS c"
            " WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')"
            " UNION ALL"
            " SELECT format('ALTER TYPE %s OWNER TO %%s', t.oid::regtype) FROM pg_type AS t"
            " WHERE t.typnamespace = 'public'::regnamespace AND t.typtype = 'e'"
            " UNION ALL"
            " SELECT format('ALTER FUNCTION %s OWNER TO %%s', p.oid::regprocedure)"
            " FROM pg_proc AS p WHERE p.pronamespace = 'public'::regnamespace"
        ).fetchall()
        for (statement,) in objects:
            conn.execute(sql.SQL(statement.replace("%s", "{}")).format(ident))


def drop_role(db: Database, role: str) -> None:
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(sql.Identifier(role)))
        # Also revokes its grants on the database and on the parameter.
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
    with db.server.admin() as admin:
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture
def supa(clinic_db: Database) -> Iterator[RoleDb]:
    """A fresh clinic database owned by a non-superuser `supa_postgres` role."""
    role = f"supa_postgres_{os.getpid()}_{next(_names)}"
    hand_over(clinic_db, role)
    try:
        with clinic_db.server.admin() as admin:
            admin.execute(
                sql.SQL("GRANT SET ON PARAMETER session_replication_role TO {}").format(
                    sql.Identifier(role)
                )
            )
        yield RoleDb(clinic_db, role, make_conninfo(clinic_db.dsn, user=role))
    finally:
        drop_role(clinic_db, role)


def state(r: RoleDb, tenant: str) -> list[dict[str, Any]]:
    return r.sql("SELECT * FROM simtrail.tenant_state(%s) ORDER BY table_name", (tenant,))


def seeded(r: RoleDb) -> tuple[str, str]:
    """Two classes charted by the role itself; returns (class A, class B)."""
    with psycopg.connect(r.dsn, autocommit=True) as conn:
        seed.seed_tenants(conn, tenants=2, patients_per_tenant=3, rng=random.Random(11))
    tenants = [row["id"] for row in r.sql("SELECT id::text AS id FROM tenants ORDER BY name")]
    return tenants[0], tenants[1]


def session(r: RoleDb, tenant: str) -> None:
    with psycopg.connect(r.dsn, autocommit=True) as conn:
        seed.student_session(conn, uuid.UUID(tenant), rng=random.Random(5))


def test_install_rewind_and_daemon_as_a_database_owner(supa: RoleDb) -> None:
    r = supa
    assert r.sql("SELECT rolsuper FROM pg_roles WHERE rolname = current_user") == [
        {"rolsuper": False}
    ]
    installed = run_cli("install", "--json", dsn=r.dsn)
    assert installed.exit_code == 0, installed.stderr
    report = json.loads(installed.stdout)
    assert len(report["actions"]) == len(FIXTURE_TABLES) and report["refused"] == []
    # Everything simtrail made belongs to the role, nothing to a superuser.
    owners = r.sql(
        "SELECT DISTINCT pg_get_userbyid(p.proowner)::text AS owner FROM pg_proc AS p"
        " WHERE p.pronamespace = 'simtrail'::regnamespace"
        " UNION SELECT pg_get_userbyid(n.nspowner)::text FROM pg_namespace AS n"
        " WHERE n.nspname = 'simtrail'"
    )
    assert owners == [{"owner": r.role}]

    a, b = seeded(r)
    marked = run_cli("mark", "create", "--tenant", a, "launch", dsn=r.dsn)
    assert marked.exit_code == 0, marked.stderr
    at_mark, other = state(r, a), state(r, b)
    session(r, a)
    assert state(r, a) != at_mark

    rewound = run_cli("rewind", "--tenant", a, "--to", "mark:launch", "--json", dsn=r.dsn)
    assert rewound.exit_code == 0, rewound.stderr
    done = json.loads(rewound.stdout)
    assert done["mode"] == "replica" and done["changes_undone"] > 0
    assert state(r, a) == at_mark
    assert state(r, b) == other

    # One daemon cycle, compaction included, as the same role.
    cycle = run_cli(
        "daemon", "--once", "--fine-window", "0", "--coarse-tick-interval", "1ms", dsn=r.dsn
    )
    assert cycle.exit_code == 0, cycle.stderr
    assert r.sql("SELECT count(*) AS n FROM simtrail.ticks") == [{"n": 1}]
    counts = r.sql(
        "SELECT (SELECT count(*) FROM simtrail.archive) AS archived,"
        " (SELECT count(*) FROM simtrail.changes WHERE net_from IS NOT NULL) AS net"
    )[0]
    assert counts["archived"] > 0 and counts["net"] > 0
    doctor = run_cli("doctor", dsn=r.dsn)
    assert doctor.exit_code == 0, doctor.stdout

    # Compaction as the role left the rewind exact: undo the undo, then redo.
    session(r, a)
    again = run_cli("rewind", "--tenant", a, "--to", "mark:launch", dsn=r.dsn)
    assert again.exit_code == 0, again.stderr
    assert state(r, a) == at_mark
    assert state(r, b) == other


def test_without_the_set_grant_every_rewind_refuses_naming_it(supa: RoleDb) -> None:
    r = supa
    assert run_cli("install", dsn=r.dsn).exit_code == 0
    a, _ = seeded(r)
    r.sql("SELECT simtrail.mark(%s, 'launch')", (a,))
    session(r, a)
    with r.db.server.admin() as admin:
        admin.execute(
            sql.SQL("REVOKE SET ON PARAMETER session_replication_role FROM {}").format(
                sql.Identifier(r.role)
            )
        )
    before = state(r, a)
    rewinds = r.sql("SELECT count(*) AS n FROM simtrail.rewinds")
    expected = (
        f"refused: the role owning simtrail ({r.role}) may not set session_replication_role,"
        " which an exact rewind needs; a superuser must run:"
        f" GRANT SET ON PARAMETER session_replication_role TO {r.role}"
    )
    for extra in ((), ("--force",)):
        result = run_cli("rewind", "--tenant", a, "--to", "mark:launch", *extra, dsn=r.dsn)
        assert result.exit_code == 3, result.stderr
        assert assert_one_line_error(result.stderr) == f"simtrail: error: {expected}"
    reset = run_cli("reset", "--tenant", a, "--mark", "launch", dsn=r.dsn)
    assert (reset.exit_code, reset.stderr) == (3, f"simtrail: error: {expected}\n")
    # Over RPC too.
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as raised:
        r.sql("SELECT simtrail.rewind(%s, 'mark:launch', false)", (a,))
    assert raised.value.diag.message_primary == expected
    assert state(r, a) == before
    assert r.sql("SELECT count(*) AS n FROM simtrail.rewinds") == rewinds


def test_a_table_the_role_does_not_own_is_refused_alone(supa: RoleDb) -> None:
    r = supa
    with psycopg.connect(r.db.dsn, autocommit=True) as conn:
        admin = conn.execute("SELECT current_user::text").fetchone()
        conn.execute("ALTER TABLE public.diabetic_records OWNER TO CURRENT_USER")
    assert admin is not None
    result = run_cli("install", "--json", dsn=r.dsn)
    assert result.exit_code == 1, result.stderr
    report = json.loads(result.stdout)
    assert len(report["actions"]) == len(FIXTURE_TABLES) - 1
    problem = (
        f"public.diabetic_records is owned by {admin[0]}, so {r.role} (which owns simtrail)"
        f" cannot attach capture to it; make {r.role} its owner or a member of {admin[0]}"
    )
    assert report["refused"] == [{"table_name": "diabetic_records", "problem": problem}]
    assert (
        result.stderr
        == f"simtrail: error: simulation_table_config row diabetic_records: {problem}\n"
    )
    assert r.sql(
        "SELECT count(*) AS n FROM pg_trigger WHERE tgname LIKE 'simtrail\\_capture\\_%%'"
    ) == [{"n": (len(FIXTURE_TABLES) - 1) * 4}]


def test_a_missing_config_table_needs_create_on_public(supa: RoleDb) -> None:
    r = supa
    with psycopg.connect(r.db.dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE public.simulation_table_config")
    result = run_cli("install", dsn=r.dsn)
    assert result.exit_code == 2
    assert assert_one_line_error(result.stderr) == (
        f"simtrail: error: public.simulation_table_config is missing and {r.role} may not"
        f" create it: create it as its owner, or GRANT CREATE ON SCHEMA public TO {r.role}"
    )
    assert r.sql("SELECT to_regnamespace('simtrail') IS NULL AS absent") == [{"absent": True}]

    with psycopg.connect(r.db.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(r.role)))
    created = run_cli("install", "--json", dsn=r.dsn)
    assert created.exit_code == 0, created.stderr
    assert json.loads(created.stdout)["created_config_table"] is True


def test_purge_and_diff_as_a_database_owner_need_no_set_grant(supa: RoleDb) -> None:
    r = supa
    assert run_cli("install", dsn=r.dsn).exit_code == 0
    a, b = seeded(r)
    r.sql("SELECT simtrail.mark(%s, 'launch')", (a,))
    at_mark, other = state(r, a), state(r, b)
    session(r, a)
    grant = sql.SQL("{} SET ON PARAMETER session_replication_role {} {}")
    ident = sql.Identifier(r.role)
    with r.db.server.admin() as admin:
        admin.execute(grant.format(sql.SQL("REVOKE"), sql.SQL("FROM"), ident))

    diffed = run_cli("diff", "--tenant", a, "--to", "mark:launch", "--json", dsn=r.dsn)
    assert diffed.exit_code == 0, diffed.stderr
    assert sum(json.loads(diffed.stdout)["totals"].values()) > 0
    purged = run_cli("purge", "--tenant", a, "--json", dsn=r.dsn)
    assert purged.exit_code == 0, purged.stderr
    assert all(row["row_count"] == 0 for row in state(r, a))
    assert state(r, b) == other

    # Bringing the class back is a rewind, which needs the grant.
    with r.db.server.admin() as admin:
        admin.execute(grant.format(sql.SQL("GRANT"), sql.SQL("TO"), ident))
    back = run_cli("rewind", "--tenant", a, "--to", "mark:launch", dsn=r.dsn)
    assert back.exit_code == 0, back.stderr
    assert state(r, a) == at_mark
    assert state(r, b) == other
