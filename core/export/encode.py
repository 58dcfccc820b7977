"""A log row as the change an export writes, with every text it needs.

The line and the canonical text share the jsonb texts, salts and column
commitments made here once per column; this is the export's inner loop.
"""

from __future__ import annotations

import hashlib
from typing import Any

from simtrail import canonical
from simtrail.export import fileformat as ff

# Per key set of an image: (column, its quoted text + ': ', its UTF-8 bytes) in
# jsonb order (canonical.key_order's, plus the bytes the salt hashes).
_columns: dict[tuple[str, ...], tuple[tuple[str, str, bytes], ...]] = {}


def _column_order(keys: tuple[str, ...]) -> tuple[tuple[str, str, bytes], ...]:
    found = _columns.get(keys)
    if found is None:
        found = tuple((k, quoted, k.encode()) for k, quoted in canonical.key_order(keys))
        if len(_columns) < 10_000:
            _columns[keys] = found
    return found


def change(row: dict[str, Any], tenant: str | None, tenant_text: str, keyed: hashlib._Hash,
            hidden: set[str]) -> ff.Change:
    """The change of a row, with every jsonb text its line and canonical text need.

    `keyed` is sha256 fed the seal secret: a column's salt is
    sha256(secret || "{change_id}/{side}/{column}")[:16] (canonical.salt), and
    its commitment sha256(salt || the value's jsonb text) (canonical.commitment).
    Both are written out here because they run for every column of every image.
    """
    salts: dict[str, dict[str, str]] = {}
    redacted: dict[str, dict[str, str]] = {}
    images: dict[str, dict[str, Any] | None] = {}
    texts: dict[str, str] = {}
    salt_texts: dict[str, str] = {}
    hidden_texts: dict[str, str] = {}
    change_id = row["change_id"]
    sha256, string, jsonb_text = hashlib.sha256, canonical.string_text, canonical.jsonb_text
    for side in ("old", "new"):
        image = row[f"{side}_data"]
        if image is None:
            images[side], texts[side], texts[f"{side}_commit"] = None, "null", "null"
            continue
        prefix = f"{change_id}/{side}/".encode()
        shown: dict[str, Any] = {}
        parts: list[str] = []
        commit_parts: list[str] = []
        salt_parts: list[str] = []
        side_salts: dict[str, str] = {}
        side_hidden: dict[str, str] = {}
        hidden_parts: list[str] = []
        for column, quoted, raw in _column_order(tuple(image)):
            value = image[column]
            kind = type(value)
            text = string(value) if kind is str else str(value) if kind is int else (
                jsonb_text(value))
            h = keyed.copy()
            h.update(prefix + raw)
            s = h.digest()[:16]
            commit = sha256(s + text.encode()).hexdigest()
            # A hex digest needs no escaping: its jsonb text is itself in quotes.
            commit_parts.append(f'{quoted}"{commit}"')
            if column in hidden:
                side_hidden[column] = commit
                hidden_parts.append(commit_parts[-1])
            else:
                if hidden:
                    shown[column] = value
                parts.append(quoted + text)
                salt_hex = s.hex()
                side_salts[column] = salt_hex
                salt_parts.append(f'{quoted}"{salt_hex}"')
        if side_salts:
            salts[side] = side_salts
            salt_texts[side] = "{" + ", ".join(salt_parts) + "}"
        if side_hidden:
            redacted[side] = side_hidden
            hidden_texts[side] = "{" + ", ".join(hidden_parts) + "}"
        # With nothing hidden the line shows the image as it came.
        images[side] = shown if hidden else image
        texts[side] = "{" + ", ".join(parts) + "}"
        texts[f"{side}_commit"] = "{" + ", ".join(commit_parts) + "}"
    # "new" before "old": jsonb orders keys of one length by their bytes.
    texts["salts"] = "{" + ", ".join(
        f'"{side}": {salt_texts[side]}' for side in ("new", "old") if side in salt_texts) + "}"
    texts["redacted"] = "{" + ", ".join(
        f'"{side}": {hidden_texts[side]}' for side in ("new", "old") if side in hidden_texts
    ) + "}"
    changed_at = canonical.utc_text(row["changed_at"])
    texts["row_pk"] = jsonb_text(row["row_pk"])
    texts["old_pk"] = jsonb_text(row["old_pk"])
    texts["actor"] = jsonb_text(row["actor"])
    texts["tenant_id"] = tenant_text
    texts["table_name"] = jsonb_text(row["table_name"])
    texts["operation"] = jsonb_text(row["operation"])
    texts["changed_at"] = string(changed_at)
    texts["moved"] = jsonb_text(row["moved"])
    return ff.Change(
        seq=row["seq"], tenant_id=tenant, change_id=change_id,
        table_name=row["table_name"], operation=row["operation"], row_pk=row["row_pk"],
        old_pk=row["old_pk"], old_data=images["old"], new_data=images["new"],
        changed_at=changed_at, actor=row["actor"],
        moved=row["moved"], salts=salts, redacted=redacted, hash=bytes(row["hash"]).hex(),
        texts=texts)
