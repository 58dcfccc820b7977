"""What a correct copy of graph rows looks like, checked on rows read back.

`problems` compares the rows before and after a clone or a subtree copy,
given the engine's old-to-new key map, and lists every way the copy is wrong:
the map is not a bijection between the rows that should have been copied and
the rows that appeared; a value differs from the source's; a reference (FK
or declared, text or uuid, composite) does not map through the bijection, or
one to a row outside the copy is not kept; a copy rule is not applied; a row
that was there before changed. Pure Python over tests/graphs.py's rows, so
it is itself tested against hand-made right and wrong copies.
"""

from __future__ import annotations

import copy as copying
import json
import uuid
from dataclasses import dataclass
from typing import Any

from tests.graphs import DEFAULTS, PK, TABLES, TENANT_VIA, Ref, Rows, key_of, tenant_of

KeyMap = dict[str, dict[str, str]]  # table -> old canonical key -> new canonical key


@dataclass
class Copy:
    """What should have been copied, where to, under which references and rules."""

    source: Rows  # the old rows to copy, per table
    target: str
    refs: list[Ref]
    rules: dict[tuple[str, str], tuple[str, str | None]]


def _text(value: Any, as_text: bool) -> Any:
    return None if value is None else (str(value) if as_text else value)


def _index(copy: Copy, ref: Ref) -> dict[tuple[Any, ...], str]:
    """Old values of the referenced columns -> old key, over the copied rows."""
    return {
        tuple(_text(row[c], ref.as_text) for c in ref.ref_cols): key
        for key, row in copy.source[ref.ref_table].items()
    }


def _own_key_columns(table: str, refs: list[Ref]) -> set[str]:
    """Key columns the copy gives new values of their own (not references)."""
    referencing = {c for r in refs if r.table == table for c in r.cols}
    return set(PK[table]) - referencing


def expected_refs(copy: Copy, after: Rows, keymap: KeyMap, table: str, old: dict[str, Any]
                  ) -> dict[str, Any]:  # fmt: skip
    """The values every reference column of a copied row should hold."""
    out: dict[str, Any] = {}
    for ref in copy.refs:
        if ref.table != table:
            continue
        value = tuple(old[c] for c in ref.cols)
        hit = None if None in value else _index(copy, ref).get(value)
        if hit is None:  # a reference to a row outside the copy is kept
            out.update(zip(ref.cols, value, strict=True))
            continue
        new = after[ref.ref_table].get(keymap[ref.ref_table].get(hit, ""), {})
        for col, ref_col in zip(ref.cols, ref.ref_cols, strict=True):
            out[col] = _text(new.get(ref_col, "<unmapped>"), ref.as_text)
    return out


def remapped(copy: Copy) -> dict[str, int]:
    """Per table, the references of copied rows that point at copied rows
    (a composite reference counts once)."""
    counts = dict.fromkeys(TABLES, 0)
    for ref in copy.refs:
        index = _index(copy, ref)
        for row in copy.source[ref.table].values():
            value = tuple(row[c] for c in ref.cols)
            counts[ref.table] += None not in value and value in index
    return counts


def report_problems(report: dict[str, Any], copy: Copy) -> list[str]:
    """The report's rows and remapped references per table, against the copy's."""
    said = {
        t: (report["tables"].get(t, {}).get("rows", 0),
            report["tables"].get(t, {}).get("references_remapped", 0))
        for t in TABLES
    }  # fmt: skip
    counts = remapped(copy)
    true = {t: (len(copy.source[t]), counts[t]) for t in TABLES}
    return [] if said == true else [f"the report says (rows, remapped) {said}, truly {true}"]


def problems(before: Rows, after: Rows, keymap: KeyMap, copy: Copy) -> list[str]:
    found: list[str] = []
    for table, rows in before.items():
        for key, image in rows.items():
            if after.get(table, {}).get(key) != image:
                found.append(f"{table} {key} was there before and changed or vanished")
    for table in TABLES:
        new = set(after[table]) - set(before[table])
        mapping = keymap.get(table, {})
        if set(mapping) != set(copy.source[table]):
            found.append(
                f"{table}: key map covers {sorted(mapping)}, should cover"
                f" {sorted(copy.source[table])}"
            )
        if len(set(mapping.values())) != len(mapping):
            found.append(f"{table}: key map sends two old rows to one new row")
        if set(mapping.values()) != new:
            found.append(
                f"{table}: new rows {sorted(new)} are not the map's image"
                f" {sorted(mapping.values())}"
            )
    if found:
        return found  # the row checks below read rows through the map
    for table in TABLES:
        for old_key, new_key in keymap.get(table, {}).items():
            found += _row_problems(before, after, keymap, copy, table, old_key, new_key)
    return found


def _row_problems(before: Rows, after: Rows, keymap: KeyMap, copy: Copy, table: str,
                  old_key: str, new_key: str) -> list[str]:  # fmt: skip
    old, new = copy.source[table][old_key], after[table][new_key]
    where = f"{table} {old_key} -> {new_key}"
    found = []
    if tenant_of(after, table, new) != copy.target:
        found.append(f"{where}: the copy's tenant is {tenant_of(after, table, new)}")
    expected = dict(old)
    expected.update(expected_refs(copy, after, keymap, table, old))
    if isinstance(TENANT_VIA[table], str):
        expected[str(TENANT_VIA[table])] = copy.target
    skip = _own_key_columns(table, copy.refs)
    for (ruled_table, column), (rule, _) in copy.rules.items():
        if ruled_table != table:
            continue
        if rule == "null":
            expected[column] = None
        elif rule == "default":
            expected[column] = DEFAULTS[(table, column)]
        elif rule == "sql":
            skip.add(column)
            taken = {r[column] for r in before[table].values()}
            if new[column] in taken or new[column] == old[column]:
                found.append(f"{where}: generated {column} {new[column]!r} is not new")
            if [r[column] for r in after[table].values()].count(new[column]) != 1:
                found.append(f"{where}: generated {column} {new[column]!r} is not unique")
    if set(new) != set(old):
        found.append(f"{where}: columns {sorted(new)} differ from {sorted(old)}")
    for column in sorted(set(old) - skip):
        if new.get(column) != expected[column]:
            found.append(
                f"{where}: {column} is {new.get(column)!r}, expected {expected[column]!r}"
                f" (source {old[column]!r})"
            )
    return found


def closure(rows: Rows, refs: list[Ref], table: str, key: str, tables: set[str]) -> Rows:
    """The row and every row of its tenant, in one of the tables, that
    references one of these, transitively."""
    tenant = tenant_of(rows, table, rows[table][key])
    chosen: Rows = {t: {} for t in TABLES}
    chosen[table][key] = rows[table][key]
    grown = True
    while grown:
        grown = False
        for ref in refs:
            values = {
                tuple(_text(r[c], ref.as_text) for c in ref.ref_cols)
                for r in chosen[ref.ref_table].values()
            }
            for k, r in rows[ref.table].items() if ref.table in tables else []:
                if (
                    k not in chosen[ref.table]
                    and tuple(r[c] for c in ref.cols) in values
                    and tenant_of(rows, ref.table, r) == tenant
                ):
                    chosen[ref.table][k] = r
                    grown = True
    return chosen


def kept_into(rows: Rows, chosen: Rows, refs: list[Ref], tenant: str) -> list[str]:
    """References from chosen rows to rows of the tenant that are not chosen."""
    found = []
    for ref in refs:
        for key, row in chosen[ref.table].items():
            value = tuple(row[c] for c in ref.cols)
            if None in value or value in _index(Copy(chosen, tenant, refs, {}), ref):
                continue
            for other in rows[ref.ref_table].values():
                if tuple(_text(other[c], ref.as_text) for c in ref.ref_cols) == value and (
                    tenant_of(rows, ref.ref_table, other) == tenant
                ):
                    found.append(f"{ref.table} {key} {ref.cols} -> {ref.ref_table}")
    return found


def missing_parents(copy: Copy, now: Rows, fks: list[Ref]) -> list[str]:
    """Foreign keys of rows to copy (as they were at a target) that point
    neither into the copy nor at a row that exists now."""
    found = []
    for ref in fks:
        inside = _index(copy, ref) if ref.ref_table in copy.source else {}
        present = {tuple(r[c] for c in ref.ref_cols) for r in now[ref.ref_table].values()}
        for key, row in copy.source[ref.table].items():
            value = tuple(row[c] for c in ref.cols)
            if None not in value and value not in inside and value not in present:
                found.append(f"{ref.table} {key} {ref.cols} -> missing {ref.ref_table} {value}")
    return found


def unchanged_keys(chosen: Rows, refs: list[Ref]) -> list[str]:
    """Rows whose key is made of references only, none of them to a copied
    row: their copy would have the same key."""
    copy = Copy(chosen, "", refs, {})
    found = []
    for table, rows in chosen.items():
        key_refs = [r for r in refs if r.table == table and set(r.cols) <= set(PK[table])]
        if not key_refs or _own_key_columns(table, refs):
            continue
        for key, row in rows.items():
            if all(tuple(row[c] for c in r.cols) not in _index(copy, r) for r in key_refs):
                found.append(f"{table} {key}")
    return found


def reference_copy(before: Rows, copy: Copy) -> tuple[Rows, KeyMap]:
    """A correct copy, computed in Python: what `problems` must accept."""
    after: Rows = copying.deepcopy(before)
    keymap: KeyMap = {t: {} for t in TABLES}
    fresh: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in TABLES}
    for table in TABLES:
        own = _own_key_columns(table, copy.refs)
        top = max([r["id"] for r in before[table].values() if isinstance(r.get("id"), int)] + [0])
        for n, (old_key, old) in enumerate(sorted(copy.source[table].items()), start=1):
            row = dict(old)
            for column in own:
                row[column] = top + n if isinstance(old[column], int) else str(uuid.uuid4())
            for (ruled_table, column), (rule, _) in copy.rules.items():
                if ruled_table == table:
                    row[column] = {"null": None, "default": DEFAULTS.get((table, column))}.get(
                        rule, f"gen-{uuid.uuid4()}"
                    )
            if isinstance(TENANT_VIA[table], str):
                row[str(TENANT_VIA[table])] = copy.target
            fresh[table][old_key] = row
    # References last, in table order: g_note's composite FK reads g_link's
    # key, which is itself made of references.
    for table in TABLES:
        for old_key, row in fresh[table].items():
            for ref in copy.refs:
                if ref.table != table:
                    continue
                value = tuple(copy.source[table][old_key][c] for c in ref.cols)
                hit = None if None in value else _index(copy, ref).get(value)
                if hit is not None:
                    for col, ref_col in zip(ref.cols, ref.ref_cols, strict=True):
                        row[col] = _text(fresh[ref.ref_table][hit][ref_col], ref.as_text)
            new_key = key_of(table, row)
            keymap[table][old_key] = new_key
            after[table][new_key] = row
    return after, keymap


def canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
