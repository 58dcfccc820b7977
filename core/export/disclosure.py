"""A redacted value disclosed later (to a court, to the student) checks against
the commitment its export line holds: sha256(salt || the value's jsonb text).

Offline, like verify: the export's files, the value and its salt suffice.
"""

from __future__ import annotations

import hmac
from pathlib import Path

from simtrail import canonical
from simtrail.export import fileformat as ff
from simtrail.export.verify import Problem, load_manifest


def check(directory: Path, change_id: int, side: str, column: str, value_json: str,
          salt_hex: str) -> tuple[bool, str]:
    try:
        value = canonical.loads(value_json)
        salt = bytes.fromhex(salt_hex)
    except ValueError:
        return False, "the value must be JSON and the salt hex"
    if len(salt) != 16:
        return False, "a salt is 16 bytes (32 hex digits)"
    try:
        data_file = load_manifest(directory)["data_file"]
    except Problem as exc:
        return False, exc.line_text()
    reader = ff.read_csv if data_file == ff.CSV else ff.read_jsonl
    for number, obj in reader(directory / data_file):
        if not isinstance(obj, dict) or obj.get("id") != change_id:
            continue
        stated = (obj.get("redacted") or {}).get(side, {}).get(column)
        if stated is None:
            return False, (f"{data_file}:{number}: change {change_id} has no redacted"
                           f" {side} column {column}")
        if hmac.compare_digest(canonical.commitment(salt, value), stated):
            return True, f"{data_file}:{number}: the disclosed value matches the commitment"
        return False, f"{data_file}:{number}: the disclosed value does not match the commitment"
    return False, f"change {change_id} is not in {data_file}"
