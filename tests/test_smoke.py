from __future__ import annotations

from tests.catalog import FIXTURE_TABLES
from tests.conftest import Database


def test_installed_template_captures(installed_db: Database) -> None:
    rows = installed_db.sql("SELECT count(*) AS n FROM simtrail.captured_tables")
    assert rows[0]["n"] == len(FIXTURE_TABLES)
