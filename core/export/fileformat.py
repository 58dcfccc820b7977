"""The export's files as text: one change a line, the manifest's hashed core.

Both the writer (which reads the database) and the offline verifier use this
module, so it imports nothing that talks to PostgreSQL.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simtrail import canonical

FORMAT = "simtrail-export"
FORMAT_VERSION = 1
JSONL = "changes.jsonl"
CSV = "changes.csv"
MANIFEST = "manifest.json"
SUMMARY = "summary.html"
RECORDS = "records.jsonl"

# The CSV's columns; a JSON-valued cell holds its jsonb text.
CSV_COLUMNS = [
    "seq", "tenant_id", "id", "table_name", "operation", "row_pk", "old_pk", "old_data",
    "new_data", "changed_at", "actor", "moved", "salts", "redacted", "stub", "held", "hash",
]
# tenant_id and moved too, so that NULL and '' stay apart.
_CSV_JSON = {
    "tenant_id", "row_pk", "old_pk", "old_data", "new_data", "actor", "moved", "salts", "redacted",
}
# Manifest keys outside the hashed core: they are made after the core's hash
# is in the export record (records.jsonl authenticates itself: it is the
# record chain up to the export record's prev_hash).
UNHASHED = ("record", "signature", "records")

_s = canonical.jsonb_text


def _digests(image: dict[str, Any], salts: dict[str, str]) -> Iterator[tuple[str, str]]:
    """Each column's commitment, in the image's order: canonical.commitment(),
    inlined, since this runs once per column of every line."""
    sha256, fromhex, text = hashlib.sha256, bytes.fromhex, canonical.jsonb_text
    string = canonical.string_text
    for column, value in image.items():
        kind = type(value)
        value_text = string(value) if kind is str else str(value) if kind is int else (
            text(value))
        yield column, sha256(fromhex(salts[column]) + value_text.encode()).hexdigest()


@dataclass
class Change:
    """One original change as a line shows it (images with redacted columns removed)."""

    seq: int
    tenant_id: str | None
    change_id: int
    table_name: str
    operation: str
    row_pk: Any
    old_pk: Any
    old_data: dict[str, Any] | None
    new_data: dict[str, Any] | None
    changed_at: str
    actor: Any
    moved: str | None
    # side -> column -> salt hex (shown columns) / commitment hex (redacted ones)
    salts: dict[str, dict[str, str]]
    redacted: dict[str, dict[str, str]]
    hash: str
    # Filled by the writer, which renders them anyway: the jsonb text of each of
    # TEXTS, so that none is rendered twice (for the canonical text and the line).
    texts: dict[str, str] | None = None

    def commits(self, side: str) -> dict[str, str] | None:
        image = self.old_data if side == "old" else self.new_data
        hidden = self.redacted.get(side, {})
        if image is None and not hidden:
            return None
        out = dict(hidden)
        out.update(_digests(image or {}, self.salts.get(side, {})))
        return out

    def _commit_text(self, side: str) -> str:
        """jsonb_text(self.commits(side)), without the dict when it need not be.

        An image with nothing redacted, its keys in jsonb order: its commitments
        are rendered in that order as they are made (the order commits() makes
        them in, so a missing salt is the same one), each hex digest quoted as
        jsonb_text quotes it. Anything else goes through commits().
        """
        image = self.old_data if side == "old" else self.new_data
        hidden = self.redacted.get(side, {})
        if (hidden or type(hidden) is not dict or type(image) is not dict
                or not canonical.in_key_order(keys := tuple(image))):
            return _s(self.commits(side))
        digests = _digests(image, self.salts.get(side, {}))
        return "{" + ", ".join([
            f'{quoted}"{digest}"'
            for (_, quoted), (_, digest) in zip(canonical.key_order(keys), digests, strict=True)
        ]) + "}"

    def canon(self) -> str:
        """canonical.canon_text() of this change; the fields' texts rendered once."""
        t = self.texts
        if t is None:
            # In the order canon_text renders them (a bad salt fails first in
            # "old"); each field's jsonb text, a string's without the call.
            s, string = _s, canonical.string_text
            v: Any
            old_commit, new_commit = self._commit_text("old"), self._commit_text("new")
            return canonical.canon_of_texts(
                seq=str(v) if type(v := self.seq) is int else s(v),
                change_id=str(v) if type(v := self.change_id) is int else s(v),
                tenant_id=string(v) if type(v := self.tenant_id) is str else s(v),
                table_name=string(v) if type(v := self.table_name) is str else s(v),
                operation=string(v) if type(v := self.operation) is str else s(v),
                row_pk=s(self.row_pk), old_pk=s(self.old_pk), old_commit=old_commit,
                new_commit=new_commit,
                changed_at=string(v) if type(v := self.changed_at) is str else s(v),
                actor=s(self.actor), moved=s(self.moved),
            )
        return canonical.canon_of_texts(
            seq=_s(self.seq), change_id=_s(self.change_id), tenant_id=t["tenant_id"],
            table_name=t["table_name"], operation=t["operation"], row_pk=t["row_pk"],
            old_pk=t["old_pk"], old_commit=t["old_commit"], new_commit=t["new_commit"],
            changed_at=t["changed_at"], actor=t["actor"], moved=t["moved"],
        )


# Change.texts: the images as the line shows them ("old", "new"), the
# commitments the canonical text holds ("old_commit", "new_commit"), and these
# fields of the line.
TEXTS = ("old", "new", "old_commit", "new_commit", "row_pk", "old_pk", "actor", "salts",
         "redacted", "tenant_id", "table_name", "operation", "changed_at", "moved")


def change_line(c: Change) -> str:
    t = c.texts
    if t is None:
        t = {"old": _s(c.old_data), "new": _s(c.new_data), "row_pk": _s(c.row_pk),
             "old_pk": _s(c.old_pk), "actor": _s(c.actor), "salts": _s(c.salts),
             "redacted": _s(c.redacted), "tenant_id": _s(c.tenant_id),
             "table_name": _s(c.table_name), "operation": _s(c.operation),
             "changed_at": _s(c.changed_at), "moved": _s(c.moved)}
    redacted = f', "redacted": {t["redacted"]}' if c.redacted else ""
    return (
        f'{{"seq": {c.seq}, "tenant_id": {t["tenant_id"]}, "id": {c.change_id},'
        f' "table_name": {t["table_name"]}, "operation": {t["operation"]},'
        f' "row_pk": {t["row_pk"]}, "old_pk": {t["old_pk"]},'
        f' "old_data": {t["old"]}, "new_data": {t["new"]},'
        f' "changed_at": {t["changed_at"]}, "actor": {t["actor"]}, "moved": {t["moved"]},'
        f' "salts": {t["salts"]}{redacted}, "hash": "{c.hash}"}}\n'
    )


def stub_line(seq: int, tenant_id: str | None, hash_hex: str, held: int | None = None) -> str:
    """A change left out (or, with `held`, one whose row retention dropped while
    its seal stays: its change id, which a prune record lists as held)."""
    mark = "" if held is None else f', "held": {held}'
    return (f'{{"seq": {seq}, "tenant_id": {_s(tenant_id)}, "stub": true{mark},'
            f' "hash": "{hash_hex}"}}\n')


def csv_row(obj: Mapping[str, Any]) -> list[str]:
    """A line's object as CSV cells; a field the line does not have is an empty cell."""
    row = []
    for name in CSV_COLUMNS:
        if name not in obj:
            row.append("")
        elif name == "stub":
            row.append("true" if obj[name] else "")
        elif name in _CSV_JSON:
            row.append(_s(obj[name]))
        else:
            row.append(str(obj[name]))
    return row


def csv_text(row: list[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(row)
    return buf.getvalue()


class BadLine(ValueError):
    """A line that is not a change or a stub of the format."""


def parse_obj(obj: Any) -> Change | tuple[int, str | None, str, int | None]:
    """A change, or (seq, tenant_id, hash, held change id or None) for a stub."""
    if not isinstance(obj, dict):
        raise BadLine("not a JSON object")
    try:
        if obj.get("stub"):
            if set(obj) - {"held"} != {"seq", "tenant_id", "stub", "hash"}:
                raise BadLine("a stub carries only seq, tenant_id, hash (and held)")
            held = _int(obj["held"]) if "held" in obj else None
            return _int(obj["seq"]), _opt_str(obj["tenant_id"]), _hex(obj["hash"]), held
        return Change(
            seq=_int(obj["seq"]), tenant_id=_opt_str(obj["tenant_id"]),
            change_id=_int(obj["id"]), table_name=str(obj["table_name"]),
            operation=str(obj["operation"]), row_pk=obj["row_pk"], old_pk=obj.get("old_pk"),
            old_data=obj.get("old_data"), new_data=obj.get("new_data"),
            changed_at=str(obj["changed_at"]), actor=obj.get("actor"), moved=obj.get("moved"),
            salts=obj.get("salts") or {}, redacted=obj.get("redacted") or {},
            hash=_hex(obj["hash"]),
        )
    except KeyError as exc:
        raise BadLine(f"field {exc.args[0]} is missing") from None


def _int(value: Any) -> int:
    if type(value) is not int:
        raise BadLine(f"{value!r} is not an integer")
    return value


def _opt_str(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise BadLine(f"{value!r} is not a string")
    return value


def _hex(value: Any) -> str:
    if not isinstance(value, str) or len(value) != 64:
        raise BadLine(f"{value!r} is not a sha256 in hex")
    bytes.fromhex(value)
    return value


def read_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open("r", encoding="utf-8", newline="\n") as f:
        for number, line in enumerate(f, start=1):
            try:
                yield number, canonical.loads(line)
            except ValueError as exc:
                raise BadLine(f"line {number}: not JSON ({exc})") from None


def read_csv(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open("r", encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != CSV_COLUMNS:
            raise BadLine("line 1: not the export's CSV header")
        for number, row in enumerate(reader, start=2):
            if len(row) != len(CSV_COLUMNS):
                raise BadLine(f"line {number}: {len(row)} cells, not {len(CSV_COLUMNS)}")
            yield number, _csv_obj(row, number)


def _csv_obj(row: list[str], number: int) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for name, cell in zip(CSV_COLUMNS, row, strict=True):
        if name == "stub":
            if cell:
                obj["stub"] = True
        elif name in _CSV_JSON:
            if cell:
                try:
                    obj[name] = canonical.loads(cell)
                except ValueError:
                    raise BadLine(f"line {number}: {name} is not JSON") from None
        elif name in ("seq", "id", "held"):
            if cell:
                try:
                    obj[name] = int(cell)
                except ValueError:
                    raise BadLine(f"line {number}: {name} is not an integer") from None
        elif cell:
            obj[name] = cell
    return obj


def core_json(manifest: Mapping[str, Any]) -> bytes:
    """The bytes whose sha256 the export record names: sorted keys, no spaces, UTF-8.

    The manifest holds only strings, integers, booleans, nulls, lists and
    objects, for which this is RFC 8785's form as well.
    """
    core = {k: v for k, v in manifest.items() if k not in UNHASHED}
    return json.dumps(core, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def core_sha256(manifest: Mapping[str, Any]) -> str:
    return hashlib.sha256(core_json(manifest)).hexdigest()


def file_facts(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    size = lines = 0
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
            size += len(block)
            lines += block.count(b"\n")
    return {"name": path.name, "sha256": digest.hexdigest(), "bytes": size, "lines": lines}
