"""Helpers for the export tests: seal, export and verify through the real CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from simtrail import canonical
from tests.conftest import CliResult, Database, run_cli

UNSEALED = """
SELECT (SELECT count(*) FROM simtrail.changes AS c WHERE c.net_count IS NULL
          AND NOT EXISTS (SELECT 1 FROM simtrail.seals AS s WHERE s.change_id = c.id))
     + (SELECT count(*) FROM simtrail.archive AS a
          WHERE NOT EXISTS (SELECT 1 FROM simtrail.seals AS s WHERE s.change_id = a.id)) AS n
"""


def seal(db: Database, *, wait: float = 60.0) -> int:
    """Seal everything sealable; the number of originals sealed.

    A transaction left open in the test's database holds sealing back (the
    seal's horizon, docs/CHAIN.md): wait up to `wait` seconds for every
    committed change to be sealed.
    """
    total = 0
    deadline = time.monotonic() + wait
    while True:
        row = db.sql("SELECT simtrail.seal_batch(10000) AS r")[0]["r"]
        total += int(row["sealed"])
        if not row["done"]:
            continue
        if db.sql(UNSEALED)[0]["n"] == 0 or time.monotonic() > deadline:
            return total
        time.sleep(0.2)


def export(db: Database, out: Path, *args: str) -> CliResult:
    return run_cli("export", "--out", str(out), "--json", *args, dsn=db.dsn)


def exported(db: Database, out: Path, *args: str) -> dict[str, Any]:
    done = export(db, out, *args)
    assert done.exit_code == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def verify(directory: Path, *args: str) -> CliResult:
    # No --dsn and no PG* variables: verify must not need a server.
    return run_cli("verify", str(directory), "--json", *args,
                   env={"PGHOST": "/nonexistent", "PGPORT": "1"})


def verified(directory: Path, *args: str) -> dict[str, Any]:
    done = verify(directory, *args)
    assert done.exit_code == 0, done.stdout + done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    assert report["verified"] is True
    return report


def problem(directory: Path, *args: str) -> dict[str, Any]:
    done = verify(directory, *args)
    assert done.exit_code == 1, done.stdout + done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    assert report["verified"] is False
    found: dict[str, Any] = report["problem"]
    return found


def lines(directory: Path) -> list[str]:
    return (directory / "changes.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)


def write_lines(directory: Path, new: list[str]) -> None:
    (directory / "changes.jsonl").write_text("".join(new), encoding="utf-8")


def manifest(directory: Path) -> dict[str, Any]:
    found: dict[str, Any] = json.loads((directory / "manifest.json").read_text("utf-8"))
    return found


def write_manifest(directory: Path, data: dict[str, Any]) -> None:
    (directory / "manifest.json").write_text(json.dumps(data, indent=2), encoding="utf-8")


def full_lines(directory: Path) -> list[dict[str, Any]]:
    return [canonical.loads(x) for x in lines(directory) if '"stub": true' not in x]
