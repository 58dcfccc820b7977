"""verify's parallel path reports what the one-process loop reports: the same
report for a sound export, the same first problem (message, file, line, seq)
for a tampered one, however the file is cut into chunks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from simtrail import canonical
from simtrail.export import parallel as par
from simtrail.export import verify as v
from tests import exportkit as ek
from tests.conftest import Database


def _outcome(directory: Path, monkeypatch: pytest.MonkeyPatch, *, parallel: bool,
             chunk: int = 4 << 20) -> tuple[Any, ...]:
    """verify's report or first problem, and whether the one-process loop ran."""
    monkeypatch.setattr(par, "PARALLEL_BYTES", 0 if parallel else 1 << 62)
    monkeypatch.setattr(par, "CHUNK_BYTES", chunk)
    monkeypatch.setattr(par, "_cores", lambda: 2)
    ran: list[bool] = []
    loop = v._check_lines

    def counted(*args: Any) -> Any:
        ran.append(True)
        return loop(*args)

    monkeypatch.setattr(v, "_check_lines", counted)
    try:
        r = v.verify(directory)
    except v.Problem as exc:
        return ("problem", exc.as_dict(), bool(ran))
    return ("verified", r.as_dict(), r.counts, bool(ran))


def _a_line_fails(outcome: tuple[Any, ...]) -> bool:
    """Whether the one-process loop must run: the workers' checks alone accept
    a file whose lines are sound, and hand a failing line to the loop to name.
    A problem found after the lines (a file's hash, a chain's end) is found
    after them either way."""
    found = outcome[1]
    return outcome[0] == "problem" and found.get("file") == "changes.jsonl" and (
        "line" in found or found["message"].startswith("line "))


def _edit(line: str, edit: Any) -> str:
    obj = canonical.loads(line)
    edit(obj)
    return canonical.jsonb_text(obj) + "\n"


TAMPERS: dict[str, Any] = {
    "none": lambda ls: ls,
    "value": lambda ls: [*ls[:7], _edit(ls[7], lambda o: o["new_data"].update(
        {next(iter(o["new_data"])): "forged"})), *ls[8:]],
    "first line": lambda ls: [_edit(ls[0], lambda o: o.update(actor={"email": "x@y"})), *ls[1:]],
    "last line": lambda ls: [*ls[:-1], _edit(ls[-1], lambda o: o.update(operation="DELETE"))],
    "delete": lambda ls: ls[:9] + ls[10:],
    "repeat": lambda ls: [*ls[:9], ls[9], *ls[9:]],
    "swap": lambda ls: [*ls[:4], ls[5], ls[4], *ls[6:]],
    "truncate": lambda ls: ls[:-3],
    "not json": lambda ls: [*ls[:11], "{nope\n", *ls[12:]],
    "empty line": lambda ls: [*ls[:11], "\n", *ls[11:]],
    "bad hash": lambda ls: [*ls[:3], ls[3].replace('"hash": "', '"hash": "A', 1)[:-4] + '"}\n',
                            *ls[4:]],
    "stub forged": lambda ls: [*ls[:6], '{"seq": 1, "tenant_id": null, "stub": true, "hash": "'
                               + "0" * 64 + '"}\n', *ls[7:]],
    "no newline at the end": lambda ls: [*ls[:-1], ls[-1].rstrip("\n")],
}


@pytest.mark.parametrize("how", sorted(TAMPERS))
def test_parallel_and_sequential_agree(seeded_db: Database, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    seeded_db.sql("UPDATE public.patients SET room_number = 'B-12'")
    assert ek.seal(seeded_db) > 50
    out = tmp_path / "x"
    ek.exported(seeded_db, out)
    ek.write_lines(out, TAMPERS[how](ek.lines(out)))
    expected = _outcome(out, monkeypatch, parallel=False)
    assert (expected[0] == "verified") == (how == "none")
    # A line a chunk, a few lines a chunk, and one chunk for the whole file.
    for chunk in (1, 3000, 1 << 30):
        got = _outcome(out, monkeypatch, parallel=True, chunk=chunk)
        assert got[:-1] == expected[:-1], chunk
        assert got[-1] == _a_line_fails(expected), chunk


def _stub_hash(ls: list[str], edit: Any) -> list[str]:
    i = next(i for i, x in enumerate(ls) if '"stub": true' in x)
    return [*ls[:i], _edit(ls[i], edit), *ls[i + 1:]]


STUB_TAMPERS: dict[str, Any] = {
    "none": lambda ls: ls,
    "stub hash": lambda ls: _stub_hash(ls, lambda o: o.update(hash="1" * 64)),
    "stub held": lambda ls: _stub_hash(ls, lambda o: o.update(held=7)),
    "stub data": lambda ls: _stub_hash(ls, lambda o: o.update(note="x")),
}


@pytest.mark.parametrize("how", sorted(STUB_TAMPERS))
def test_stubs_agree(seeded_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                     how: str) -> None:
    seeded_db.sql("UPDATE public.patients SET room_number = 'B-12'")
    assert ek.seal(seeded_db) > 50
    out = tmp_path / "f"
    ek.exported(seeded_db, out, "--table", "patients")
    ek.write_lines(out, STUB_TAMPERS[how](ek.lines(out)))
    expected = _outcome(out, monkeypatch, parallel=False)
    assert (expected[0] == "verified") == (how == "none")
    if how == "none":
        assert expected[1]["stubs"] > 0
    for chunk in (1, 3000, 1 << 30):
        got = _outcome(out, monkeypatch, parallel=True, chunk=chunk)
        assert got[:-1] == expected[:-1], chunk
        assert got[-1] == _a_line_fails(expected), chunk
