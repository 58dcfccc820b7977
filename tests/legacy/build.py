"""Write the install script of an earlier release, as its installer would run it.

    python -m tests.legacy.build REF VERSION

reads the release at git REF and writes tests/legacy/release_vVERSION.sql.gz:
its versioned files up to VERSION (each recorded in schema_version), its
function files in its installer's order, the revoke, and a sync that
attaches capture. The upgrade test runs it where a user's database would
have that release, so the log it upgrades was written by that release's own
capture, compaction and rewinds.
"""

from __future__ import annotations

import gzip
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PREFIX = "triggers/"


def show(ref: str, path: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), "show", f"{ref}:{path}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def named_query(text: str, name: str) -> str:
    """One `-- name:` block of a queries file."""
    match = re.search(rf"^-- name: {name}\n(.*?)(?=^-- name: |\Z)", text, re.M | re.S)
    if match is None:
        raise SystemExit(f"no query {name!r} in that release")
    return match.group(1).strip()


def build(ref: str, version: int) -> str:
    listing = subprocess.run(
        ["git", "-C", str(REPO), "ls-tree", "--name-only", ref, f"{PREFIX}sql/versions/"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    files = sorted(p for p in listing if re.search(r"/\d{4}_[a-z0-9_]+\.sql$", p))
    installer = show(ref, f"{PREFIX}installer.py")
    block = re.search(r"FUNCTION_FILES = \((.*?)\)", installer, re.S)
    if block is None:
        raise SystemExit("that release's installer lists no FUNCTION_FILES")
    function_files = re.findall(r'"([^"]+\.sql)"', block.group(1))
    queries = show(ref, f"{PREFIX}sql/queries.sql")
    parts = [f"-- simtrail as released at {ref}, schema version {version}.", "BEGIN;"]
    for path in files:
        number, name = re.search(r"(\d{4})_([a-z0-9_]+)\.sql$", path).groups()  # type: ignore[union-attr]
        if int(number) > version:
            continue
        parts.append(show(ref, path))
        parts.append(
            f"INSERT INTO simtrail.schema_version (version, name) VALUES ({int(number)}, '{name}');"
        )
    parts.extend(show(ref, PREFIX + f) for f in function_files)
    parts.append(named_query(queries, "revoke_functions") + ";")
    parts.append(named_query(queries, "sync").replace("%(apply)s", "true") + ";")
    parts.append("COMMIT;")
    return "\n".join(parts) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].isdigit():
        print("usage: python -m tests.legacy.build REF VERSION", file=sys.stderr)
        return 2
    ref, version = argv[0], int(argv[1])
    out = HERE / f"release_v{version}.sql.gz"
    # mtime=0: the same release always gives the same bytes.
    out.write_bytes(gzip.compress(build(ref, version).encode(), mtime=0))
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
