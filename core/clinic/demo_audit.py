"""The demo's auditor step: seal, export the launched class, verify it offline.

It runs after the reset, so the export holds the whole story of the class:
its launch, the students' charting and the instructor's reset.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from simtrail.db import connect
from simtrail.export import verify, writer
from simtrail.triggers import sealing


def export_and_verify(
    dsn: str, tenant: str, out: Path, say: Callable[[str], None]
) -> dict[str, Any]:
    with connect(dsn, "demo seal") as conn:
        sealed = sealing.seal(conn)
    # The directory is the demo's own, remade each run; an export never
    # overwrites one.
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    exported = writer.export(
        lambda purpose, autocommit: connect(dsn, f"demo {purpose}", autocommit=autocommit),
        out,
        writer.Filters(tenants=[tenant]),
    )
    checked = verify.verify(out)
    say(
        f"simtrail seal: {sealed['sealed']} changes since the daemon's cycle sealed into their"
        f" classes' hash chains; simtrail export: the launched class's {exported['changes']}"
        f" changes (launch, session, reset) to {out}"
    )
    say(
        f"simtrail verify {out}: verified offline, {checked.lines} lines in"
        f" {checked.chains} chain(s), signature {checked.signature}"
    )
    return {
        "sealed": sealed["sealed"],
        "out": str(out),
        "exported": exported["changes"],
        "verified": checked.as_dict(),
    }
