"""A fresh install and an install upgraded from every earlier version build the same catalog."""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

import pytest

from simtrail.db import connect
from simtrail.triggers import installer
from tests.conftest import Database

CATALOG_QUERIES = {
    "columns": """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) AS type,
               a.attnotnull, pg_get_expr(d.adbin, d.adrelid) AS default, a.attidentity
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE c.relnamespace = 'simtrail'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY 1, 2""",
    "constraints": """
        SELECT conrelid::regclass::text AS rel, conname, pg_get_constraintdef(oid) AS def
        FROM pg_constraint WHERE connamespace = 'simtrail'::regnamespace ORDER BY 1, 2""",
    "indexes": """
        SELECT indexrelid::regclass::text AS name, pg_get_indexdef(indexrelid) AS def
        FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
        WHERE c.relnamespace = 'simtrail'::regnamespace ORDER BY 1""",
    "functions": """
        SELECT p.oid::regprocedure::text AS name, md5(p.prosrc) AS body, p.prosecdef,
               p.proconfig, p.provolatile, p.proacl::text AS acl
        FROM pg_proc p WHERE p.pronamespace = 'simtrail'::regnamespace ORDER BY 1""",
    "views": """
        SELECT c.relname, pg_get_viewdef(c.oid) AS def FROM pg_class c
        WHERE c.relnamespace = 'simtrail'::regnamespace AND c.relkind = 'v' ORDER BY 1""",
    "relations": """
        SELECT c.relname, c.relkind, c.relacl::text AS acl FROM pg_class c
        WHERE c.relnamespace = 'simtrail'::regnamespace ORDER BY 1""",
    "triggers": """
        SELECT tgrelid::regclass::text AS rel, tgname, tgenabled,
               obj_description(oid, 'pg_trigger') AS comment
        FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1, 2""",
    "versions": "SELECT version, name FROM simtrail.schema_version ORDER BY 1",
}


def catalog(db: Database) -> dict[str, list[dict[str, Any]]]:
    return {name: db.sql(query) for name, query in CATALOG_QUERIES.items()}


def install_up_to(db: Database, last: int) -> None:
    """What an older release left behind: its versioned files, applied in order."""
    with connect(db.dsn, "test upgrade") as conn, conn.transaction():
        installer.ensure_config_table(conn)
        for version in installer.versions():
            if version.number <= last:
                conn.execute(installer.script(f"sql/versions/{version.filename}"))
                conn.execute(
                    installer.q("record_version"),
                    {"version": version.number, "name": version.name},
                )


def test_version_files_are_numbered_without_gaps() -> None:
    names = sorted(
        entry.name
        for entry in resources.files("simtrail.triggers").joinpath("sql/versions").iterdir()
        if entry.name.endswith(".sql")
    )
    assert names, "no versioned SQL files"
    assert all(re.fullmatch(r"\d{4}_[a-z0-9_]+\.sql", n) for n in names), names
    assert [int(n[:4]) for n in names] == list(range(1, len(names) + 1))
    assert installer.latest_version() == len(names)


@pytest.mark.parametrize("start", range(1, installer.latest_version()))
def test_upgrade_from_every_earlier_version_matches_a_fresh_install(
    clinic_db: Database, installed_db: Database, start: int
) -> None:
    install_up_to(clinic_db, start)
    with connect(clinic_db.dsn, "test upgrade") as conn:
        report = installer.install(conn)
    assert (report.from_version, report.to_version) == (start, installer.latest_version())
    upgraded, fresh = catalog(clinic_db), catalog(installed_db)
    for part in CATALOG_QUERIES:
        assert upgraded[part] == fresh[part], part
