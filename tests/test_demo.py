"""The demo end to end on each test server: launch by clone, copy a patient, chart, reset."""

from __future__ import annotations

from pathlib import Path

import psycopg

from simtrail.clinic import demo
from tests.conftest import Server


def test_the_demo_launches_copies_and_resets_exactly(server: Server, tmp_path: Path) -> None:
    lines: list[str] = []
    try:
        result = demo.run(server.admin_dsn, tmp_path, lines.append,
                          export_dir=tmp_path / "export")
    finally:
        with psycopg.connect(server.admin_dsn, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS simtrail_demo WITH (FORCE)")
    assert result["launch_exact"] and result["reset_exact"] and result["other_classes_untouched"]
    assert result["launch"]["diff_against_template"] == {
        "differ": 0,
        "only_in_clone": 0,
        "only_in_template": 0,
    }
    assert all(t["ids_shared"] == 0 for t in result["launch"]["tables"])
    assert result["duplicate"]["tables"]["public.patients"] == 1
    assert result["duplicate"]["rows"] > 10
    assert result["rewind"]["changes_undone"] > 0
    assert any(line.startswith("simtrail clone: launched") for line in lines)
    assert any(line.startswith("simtrail copy: duplicated patient") for line in lines)
    # The auditor's step: the launched class's whole history, exported and
    # verified offline, the reset's own changes included.
    audit = result["audit"]
    assert audit["verified"]["verified"] and audit["verified"]["chains"] == 1
    assert audit["exported"] == audit["verified"]["lines"] > result["rewind"]["changes_undone"]
    assert (tmp_path / "export" / "manifest.json").is_file()
    assert any(line.startswith("simtrail verify ") for line in lines)
