"""Helpers for the install, config, doctor and status tests.

Snapshots of what simtrail may touch, to prove that a command changed nothing.

`snapshot` reads, in one transaction, every trigger (with its comment, where
simtrail keeps the hash of the rendered SQL), every function and relation in
schema simtrail, the config rows and simtrail's bookkeeping. Two snapshots are
equal only when none of that changed. `table_contents` fingerprints the rows of
every table in a schema, for "the application's tables were not touched".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import psycopg
import structlog
from click.testing import CliRunner
from psycopg import sql
from psycopg.rows import dict_row

from simtrail.cli.main import cli
from tests.conftest import CliResult

Rows = list[dict[str, Any]]

CAPTURE_TRIGGERS = frozenset(
    {
        "simtrail_capture_insert",
        "simtrail_capture_update",
        "simtrail_capture_delete",
        "simtrail_capture_truncate",
    }
)


@dataclass(frozen=True)
class Catalog:
    schema_present: bool
    # Every user trigger in the database: the application's own and ours.
    triggers: Rows
    functions: Rows
    relations: Rows
    config_table: Rows
    config: Rows
    captured: Rows
    versions: Rows
    log: Rows

    def without_times(self) -> Catalog:
        """The same snapshot minus install times, which a reinstall renews."""
        return dataclasses.replace(
            self,
            captured=[_drop(r, "attached_at") for r in self.captured],
            versions=[_drop(r, "installed_at") for r in self.versions],
        )

    def differences(self, other: Catalog) -> str:
        """What differs from `other`, item by item, for assertion messages."""
        out = []
        for f in dataclasses.fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if mine == theirs:
                continue
            if isinstance(mine, list) and isinstance(theirs, list):
                out += [f"{f.name} only before: {r}" for r in mine if r not in theirs]
                out += [f"{f.name} only after: {r}" for r in theirs if r not in mine]
            else:
                out.append(f"{f.name}: {mine!r} != {theirs!r}")
        return "\n".join(out)

    def our_triggers(self) -> Rows:
        return [t for t in self.triggers if t["name"].startswith("simtrail_capture_")]

    def app_triggers(self) -> Rows:
        return [t for t in self.triggers if not t["name"].startswith("simtrail_capture_")]

    def capture_functions(self) -> list[str]:
        """Generated per-table capture functions (simtrail.capture_*() RETURNS trigger)."""
        return [
            f["signature"]
            for f in self.functions
            if f["signature"].startswith("simtrail.capture_") and f["returns"] == "trigger"
        ]

    def captured_tables(self) -> set[str]:
        """Tables carrying at least one of our triggers."""
        return {t["table_name"] for t in self.our_triggers()}


def _drop(row: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != key}


_TRIGGERS = """
SELECT t.tgrelid::regclass::text AS table_name, t.tgname::text AS name,
       t.tgenabled::text AS enabled, p.oid::regprocedure::text AS function,
       pg_catalog.obj_description(t.oid, 'pg_trigger') AS comment
FROM pg_catalog.pg_trigger AS t
JOIN pg_catalog.pg_proc AS p ON p.oid = t.tgfoid
WHERE NOT t.tgisinternal
ORDER BY 1, 2
"""

_FUNCTIONS = """
SELECT p.oid::regprocedure::text AS signature, p.prorettype::regtype::text AS returns,
       pg_catalog.md5(p.prosrc) AS src_md5,
       p.prosecdef AS security_definer, p.proconfig AS settings, p.proacl::text AS acl,
       pg_catalog.pg_get_userbyid(p.proowner)::text AS owner
FROM pg_catalog.pg_proc AS p
JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
WHERE n.nspname = 'simtrail'
ORDER BY 1
"""

_RELATIONS = """
SELECT c.relname::text AS name, c.relkind::text AS kind, c.relacl::text AS acl
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = 'simtrail'
ORDER BY 1
"""

_CONFIG_TABLE = """
SELECT c.oid::integer AS oid, c.relacl::text AS acl,
       pg_catalog.array_agg(a.attname::text ORDER BY a.attnum) AS columns
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.oid = pg_catalog.to_regclass('public.simulation_table_config')
GROUP BY c.oid, c.relacl
"""

_CAPTURED = """
SELECT t.table_name, t.function_name, t.pk_columns, t.tenant_path, t.trigger_hash, t.attached_at
FROM simtrail.captured_tables AS t
ORDER BY t.table_name
"""

_VERSIONS = """
SELECT v.version, v.name, v.installed_at FROM simtrail.schema_version AS v ORDER BY v.version
"""

_LOG = """
SELECT (SELECT pg_catalog.count(*) FROM simtrail.changes) AS changes,
       (SELECT pg_catalog.count(*) FROM simtrail.transactions) AS transactions
"""


def _rows(conn: psycopg.Connection[dict[str, Any]], query: str) -> Rows:
    return conn.execute(query.encode()).fetchall()


def snapshot(dsn: str) -> Catalog:
    with psycopg.connect(dsn, row_factory=dict_row) as conn, conn.transaction():
        conn.execute(b"SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        # Names print schema-qualified whatever the server's default search_path.
        conn.execute(b"SET LOCAL search_path = ''")
        present = bool(
            _rows(conn, "SELECT pg_catalog.to_regnamespace('simtrail') IS NOT NULL AS p")[0]["p"]
        )
        config_table = _rows(conn, _CONFIG_TABLE)
        return Catalog(
            schema_present=present,
            triggers=_rows(conn, _TRIGGERS),
            functions=_rows(conn, _FUNCTIONS),
            relations=_rows(conn, _RELATIONS),
            config_table=config_table,
            config=(
                _rows(conn, "SELECT * FROM public.simulation_table_config ORDER BY id")
                if config_table
                else []
            ),
            captured=_rows(conn, _CAPTURED) if present else [],
            versions=_rows(conn, _VERSIONS) if present else [],
            log=_rows(conn, _LOG) if present else [],
        )


def table_contents(dsn: str, schema: str = "public") -> dict[str, tuple[int, str]]:
    """Row count and an md5 of the sorted rows of every table in `schema`."""
    found: dict[str, tuple[int, str]] = {}
    with psycopg.connect(dsn, row_factory=dict_row) as conn, conn.transaction():
        conn.execute(b"SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        tables = conn.execute(
            b"SELECT c.relname::text AS name FROM pg_catalog.pg_class AS c"
            b" JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace"
            b" WHERE n.nspname = %s AND c.relkind IN ('r', 'p') ORDER BY 1",
            (schema,),
        ).fetchall()
        for t in tables:
            row = conn.execute(
                sql.SQL(
                    "SELECT pg_catalog.count(*) AS n, pg_catalog.md5(coalesce("
                    "pg_catalog.string_agg(r::text, E'\\n' ORDER BY r::text), '')) AS digest "
                    "FROM {} AS r"
                ).format(sql.Identifier(schema, t["name"]))
            ).fetchone()
            assert row is not None
            found[f"{schema}.{t['name']}"] = (int(row["n"]), str(row["digest"]))
    return found


def assert_one_line_error(stderr: str) -> str:
    """The CLI's failure shape (I9): exactly one line, prefixed, no traceback."""
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    assert lines[0].startswith("simtrail: error: "), lines[0]
    assert "Traceback" not in stderr
    return lines[0]


def invoke(dsn: str, *args: str) -> CliResult:
    """The CLI in this process, through click's runner.

    The same code as `run_cli` minus the interpreter start-up (about 0.3 s a
    call), for tests about what a command does to the database. Tests about the
    shape of a failure, and doctor's, use the real subprocess.
    """
    saved = structlog.get_config()
    try:
        result = CliRunner().invoke(cli, ["--dsn", dsn, *args], prog_name="simtrail")
    finally:
        # The command points structlog at the runner's stream; put it back.
        structlog.configure(**saved)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return CliResult(result.exit_code, result.stdout, result.stderr)


# The clinic fixture's tenant data: what its config lists and discovery proposes.
FIXTURE_TABLES = {
    f"public.{name}"
    for name in (
        "patients",
        "patient_vitals",
        "patient_medications",
        "medication_administrations",
        "patient_notes",
        "lab_panels",
        "lab_results",
        "doctors_orders",
        "bowel_records",
        "diabetic_records",
        "handover_notes",
        "patient_wounds",
        "wound_assessments",
        "patient_care_team",
        "medication_scans",
        "order_medications",
        "wound_treatments",
    )
}
