"""Canonical encoding v1 of a change: the hash input, reproduced outside PostgreSQL.

The seal computes each change's hash in SQL from `jsonb::text`. An auditor's
machine has no PostgreSQL, so this module renders the same text byte for byte
(docs/CHAIN.md says the rules). It imports nothing from the database side:
`simtrail verify DIR` runs on it alone.

Values are what `json.loads(..., parse_float=Decimal)` gives: dict, list, str,
int, Decimal, bool, None. A float cannot be rendered as PostgreSQL would (it
has lost the digits), so it is refused.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Mapping
from decimal import Decimal
from functools import partial
from typing import Any

VERSION = 1
ZERO_HASH = bytes(32)

# PostgreSQL's escape_json and Python's encoder agree: \" \\ \b \f \n \r \t,
# other characters below 0x20 as \u00xx (lower-case hex), everything else as is.
# (json.dumps(s, ensure_ascii=False) is this same C function, with more calls.)
_string: Callable[[str], str] = json.encoder.encode_basestring
string_text = _string

# Numbers must keep PostgreSQL's digits (12.50 stays 12.50), so never floats.
# One decoder for every call: json.loads with parse_float builds a new one each
# time, which cost more than the parsing (the export loads three values a row).
_decoder = json.JSONDecoder(parse_float=Decimal)
_decode = _decoder.decode
_loads_bytes = partial(json.loads, parse_float=Decimal)


def loads(text: str | bytes | bytearray) -> Any:
    """json.loads(text, parse_float=Decimal), the same checks and errors."""
    if type(text) is str:
        if text.startswith("\ufeff"):
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        return _decode(text)
    return _loads_bytes(text)


def loads_utf8(data: str | bytes) -> Any:
    """loads() of UTF-8 bytes (PostgreSQL's json output to a UTF8 client): no
    encoding to detect, no decoder to build."""
    if type(data) is not bytes:
        return loads(data)
    text = data.decode("utf-8", "surrogatepass")
    if text.startswith("\ufeff"):
        return loads(data)
    return _decode(text)


def _key_order(key: str) -> tuple[int, bytes]:
    # jsonb stores an object's keys shorter first, then by their bytes.
    raw = key.encode()
    return len(raw), raw


# Images of one table share their keys, so each key set is sorted once.
_orders: dict[tuple[str, ...], tuple[tuple[str, str], ...]] = {}


def key_order(keys: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """(key, its quoted text + ': ') in jsonb order; cached per key set."""
    found = _orders.get(keys)
    if found is None:
        found = tuple((k, _string(k) + ": ") for k in sorted(keys, key=_key_order))
        if len(_orders) < 10_000:
            _orders[keys] = found
    return found


# Key sets already in jsonb order (as every image an export writes is).
_sorted: dict[tuple[str, ...], bool] = {}


def in_key_order(keys: tuple[str, ...]) -> bool:
    """Whether the keys are in jsonb's order already; cached per key set."""
    found = _sorted.get(keys)
    if found is None:
        found = tuple(k for k, _ in key_order(keys)) == keys
        if len(_sorted) < 10_000:
            _sorted[keys] = found
    return found


def number_text(value: Decimal) -> str:
    """numeric_out: plain digits, the scale kept, no exponent, no negative zero."""
    if not value.is_finite():
        raise ValueError(f"jsonb has no {value}")
    if value.is_zero():
        value = abs(value)
    return format(value, "f")


def jsonb_text(value: Any) -> str:
    """The text PostgreSQL 15/16 gives for `value::jsonb::text`."""
    kind = type(value)
    if kind is str:
        return _string(value)
    if kind is int:
        return str(value)
    if kind is dict:
        # A list, not a generator: join() makes one anyway; and a string member
        # (most of them) without the call: this runs per image and per line.
        return "{" + ", ".join([
            quoted + (_string(v) if type(v := value[k]) is str else jsonb_text(v))
            for k, quoted in key_order(tuple(value))]) + "}"
    if kind is Decimal and value.is_finite() and not value.is_zero():
        return format(value, "f")
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if kind is list:
        return "[" + ", ".join([jsonb_text(v) for v in value]) + "]"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return number_text(value)
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        return "{" + ", ".join(
            quoted + jsonb_text(value[k]) for k, quoted in key_order(tuple(value))) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(jsonb_text(v) for v in value) + "]"
    raise TypeError(f"no jsonb text for a {type(value).__name__} (floats lose digits: use Decimal)")


def salt(secret: bytes, change_id: int, side: str, column: str) -> bytes:
    """The 16 bytes that make one column's commitment unguessable."""
    return hashlib.sha256(secret + f"{change_id}/{side}/{column}".encode()).digest()[:16]


def salter(secret: bytes) -> Callable[[int, str, str], bytes]:
    """salt() with the secret's block hashed once (the export calls it per column)."""
    keyed = hashlib.sha256(secret)

    def salt_of(change_id: int, side: str, column: str) -> bytes:
        h = keyed.copy()
        h.update(f"{change_id}/{side}/{column}".encode())
        return h.digest()[:16]

    return salt_of


def commitment(salt_bytes: bytes, value: Any) -> str:
    """sha256(salt || value's jsonb text), hex: what the chain holds for a column."""
    return hashlib.sha256(salt_bytes + jsonb_text(value).encode()).hexdigest()


def commitment_of_text(salt_bytes: bytes, value_text: str) -> str:
    return hashlib.sha256(salt_bytes + value_text.encode()).hexdigest()


def utc_text(at: dt.datetime) -> str:
    """to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')."""
    u = at.astimezone(dt.UTC)
    return (
        f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:"
        f"{u.second:02d}.{u.microsecond:06d}Z"
    )


def canon_text(
    *,
    seq: int,
    change_id: int,
    tenant_id: str | None,
    table_name: str,
    operation: str,
    row_pk: Any,
    old_pk: Any,
    old_commit: Mapping[str, str] | None,
    new_commit: Mapping[str, str] | None,
    changed_at: str,
    actor: Any,
    moved: str | None,
) -> str:
    """The jsonb text of the change's canonical object (commitments in place of images)."""
    t = jsonb_text
    return canon_of_texts(
        seq=t(seq), change_id=t(change_id), tenant_id=t(tenant_id), table_name=t(table_name),
        operation=t(operation), row_pk=t(row_pk), old_pk=t(old_pk), old_commit=t(old_commit),
        new_commit=t(new_commit), changed_at=t(changed_at), actor=t(actor), moved=t(moved))


def canon_of_texts(
    *, seq: str, change_id: str, tenant_id: str, table_name: str, operation: str, row_pk: str,
    old_pk: str, old_commit: str, new_commit: str, changed_at: str, actor: str, moved: str,
) -> str:
    """canon_text() from each field's jsonb text (every argument is one), for a caller
    that has them rendered.

    Its keys in jsonb's order, written out: this runs once per change.
    """
    return (
        f'{{"v": {VERSION}, "id": {change_id}, "seq": {seq}, "actor": {actor},'
        f' "moved": {moved}, "old_pk": {old_pk}, "row_pk": {row_pk},'
        f' "new_data": {new_commit}, "old_data": {old_commit},'
        f' "operation": {operation}, "tenant_id": {tenant_id},'
        f' "changed_at": {changed_at}, "table_name": {table_name}}}'
    )


def link(prev: bytes, canon: str) -> bytes:
    """hash(seq) = sha256(hash(seq - 1) || canon)."""
    return hashlib.sha256(prev + canon.encode()).digest()


def commit_image(
    secret: bytes, change_id: int, side: str, image: Mapping[str, Any] | None
) -> dict[str, str] | None:
    """commit(img, side) with the salts derived from the secret (the export's side)."""
    if image is None:
        return None
    return {c: commitment(salt(secret, change_id, side, c), v) for c, v in image.items()}
