"""I12 in the files: every kind of tampering with an export is caught offline
and named (file, line, seq); an untouched export verifies."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from simtrail import canonical
from simtrail.export import fileformat as ff
from tests import exportkit as ek
from tests.conftest import Database, run_cli


@pytest.fixture
def sealed(seeded_db: Database) -> Database:
    seeded_db.sql("UPDATE public.patients SET room_number = 'B-12'"
                  " WHERE id = (SELECT min(id::text)::uuid FROM public.patients)")
    assert ek.seal(seeded_db) > 50
    return seeded_db


@pytest.fixture
def out(sealed: Database, tmp_path: Path) -> Path:
    ek.exported(sealed, tmp_path / "x")
    return tmp_path / "x"


def test_an_untouched_export_verifies(sealed: Database, out: Path) -> None:
    report = ek.verified(out)
    count = sealed.sql("SELECT count(*) AS n FROM simtrail.seals")[0]["n"]
    assert report["lines"] == count and report["stubs"] == 0
    assert report["signature"] == "absent"
    assert sorted(p.name for p in out.iterdir()) == ["changes.jsonl", "manifest.json",
                                                      "records.jsonl", "summary.html"]
    # The record chain so far: the seal's checkpoints, up to this export's record.
    records = (out / "records.jsonl").read_text("utf-8").splitlines()
    assert records and all('"kind": "checkpoint"' in r for r in records)
    # The export is itself in the record chain, naming this manifest.
    body = sealed.sql("SELECT body FROM simtrail.chain_records WHERE kind = 'export'")[0]["body"]
    assert body["manifest_sha256"] == ff.core_sha256(ek.manifest(out))


def test_verify_imports_nothing_of_the_database() -> None:
    code = ("import sys, simtrail.export.verify, simtrail.export.disclosure;"
            " bad = [m for m in sys.modules if m.startswith(('psycopg', 'simtrail.db',"
            " 'simtrail.triggers', 'simtrail.export.writer'))]; print(bad)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"


def _edit(line: str, edit: Any) -> str:
    obj = canonical.loads(line)
    edit(obj)
    return canonical.jsonb_text(obj) + "\n"


def test_an_edited_value_is_named(out: Path) -> None:
    lines = ek.lines(out)
    lines[5] = _edit(lines[5], lambda o: o["new_data"].update(
        {next(iter(o["new_data"])): "forged"}))
    ek.write_lines(out, lines)
    found = ek.problem(out)
    assert (found["file"], found["line"]) == ("changes.jsonl", 6)
    assert found["seq"] == canonical.loads(lines[5])["seq"]
    assert "edited value" in found["message"]


def test_an_edited_actor_or_time_is_caught(out: Path) -> None:
    lines = ek.lines(out)
    lines[2] = _edit(lines[2], lambda o: o.update(changed_at="2020-01-01T00:00:00.000000Z"))
    ek.write_lines(out, lines)
    assert ek.problem(out)["line"] == 3


def test_an_edit_with_its_hash_recomputed_breaks_the_next_line(out: Path) -> None:
    lines = ek.lines(out)
    target = ff.parse_obj(canonical.loads(lines[3]))
    previous = ff.parse_obj(canonical.loads(lines[2]))
    assert isinstance(target, ff.Change) and isinstance(previous, ff.Change)
    target.actor = {"email": "someone.else@example.org"}
    target.hash = canonical.link(bytes.fromhex(previous.hash), target.canon()).hex()
    lines[3] = ff.change_line(target)
    ek.write_lines(out, lines)
    found = ek.problem(out)
    assert found["line"] == 5


@pytest.mark.parametrize("how", ["delete", "insert", "swap", "truncate"])
def test_missing_inserted_reordered_and_truncated_lines(out: Path, how: str) -> None:
    lines = ek.lines(out)
    if how == "delete":
        del lines[4]
    elif how == "insert":
        lines.insert(4, lines[4])
    elif how == "swap":
        lines[3], lines[4] = lines[4], lines[3]
    else:
        del lines[-1]
    ek.write_lines(out, lines)
    found = ek.problem(out)
    assert found["file"] == "changes.jsonl"
    if how == "truncate":
        assert "missing at its end" in found["message"]
    else:
        assert found["line"] == {"delete": 5, "insert": 6, "swap": 4}[how]
        assert "expected seq" in found["message"]


def test_a_wrong_count_in_the_manifest(out: Path) -> None:
    data = ek.manifest(out)
    table = next(iter(data["counts"]))
    op = next(iter(data["counts"][table]))
    data["counts"][table][op] += 1
    ek.write_manifest(out, data)
    found = ek.problem(out)
    assert found["file"] == "manifest.json" and "counts" in found["message"]


def test_a_manifest_edited_consistently_breaks_its_record(out: Path) -> None:
    data = ek.manifest(out)
    data["filters"]["tables"] = ["public.vitals"]
    ek.write_manifest(out, data)
    assert "changed after its export record" in ek.problem(out)["message"]


def test_a_wrong_file_hash(out: Path) -> None:
    page = out / "summary.html"
    page.write_text(page.read_text("utf-8").replace("simtrail export", "simtrail expert"),
                    encoding="utf-8")
    found = ek.problem(out)
    assert found["file"] == "summary.html" and "sha256" in found["message"]


def test_a_line_of_an_unlisted_tenant(out: Path) -> None:
    lines = ek.lines(out)
    lines.append(_edit(lines[0], lambda o: o.update(tenant_id="intruder")))
    ek.write_lines(out, lines)
    assert "does not list" in ek.problem(out)["message"]


def _keys(tmp: Path, name: str) -> Path:
    done = run_cli("keygen", "--out", str(tmp / name))
    assert done.exit_code == 0, done.stderr
    return tmp / name


def test_signatures(sealed: Database, tmp_path: Path) -> None:
    key, other = _keys(tmp_path, "k"), _keys(tmp_path, "o")
    ek.exported(sealed, tmp_path / "s", "--sign-key", str(key))
    assert ek.verified(tmp_path / "s", "--public-key", f"{key}.pub")["signature"] == "valid"
    assert ek.verified(tmp_path / "s")["signature"] == "not checked"
    assert "another key" in ek.problem(tmp_path / "s", "--public-key", f"{other}.pub")["message"]
    data = ek.manifest(tmp_path / "s")
    sig = bytearray(bytes.fromhex(data["signature"]["value"]))
    sig[0] ^= 1
    data["signature"]["value"] = sig.hex()
    ek.write_manifest(tmp_path / "s", data)
    assert "bad signature" in ek.problem(tmp_path / "s", "--public-key", f"{key}.pub")["message"]
    # The database keeps the signature with the record.
    row = sealed.sql("SELECT key_id FROM simtrail.chain_records WHERE kind = 'export'")[0]
    assert row["key_id"] == ek.manifest(tmp_path / "s")["signature"]["key_id"]


def test_a_whole_rewrite_passes_without_a_key_and_fails_with_one(
    sealed: Database, tmp_path: Path
) -> None:
    """What the chain cannot prove alone: a forger who rewrites every hash, the
    checkpoints, the manifest and its record. The published checkpoints catch
    a forger who leaves them be; only the signature catches one who does not."""
    key = _keys(tmp_path, "k")
    out = tmp_path / "s"
    ek.exported(sealed, out, "--sign-key", str(key))
    original = (out / "records.jsonl").read_text("utf-8")
    _forge(out, rewrite_records=False)
    assert "checkpoint record" in ek.problem(out)["message"]
    (out / "records.jsonl").write_text(original, encoding="utf-8")
    _forge(out, rewrite_records=True)
    assert ek.verified(out)["signature"] == "not checked"
    assert "bad signature" in ek.problem(out, "--public-key", f"{key}.pub")["message"]


def _forge(out: Path, *, rewrite_records: bool) -> None:
    data = ek.manifest(out)
    heads: dict[Any, bytes] = {c["tenant_id"]: bytes.fromhex(c["anchor"]) for c in data["chains"]}
    forged: dict[tuple[Any, int], str] = {}
    new = []
    for i, line in enumerate(ek.lines(out)):
        change = ff.parse_obj(canonical.loads(line))
        assert isinstance(change, ff.Change)
        if i == 0:
            change.actor = {"email": "forger@example.org"}
        change.hash = canonical.link(heads[change.tenant_id], change.canon()).hex()
        heads[change.tenant_id] = bytes.fromhex(change.hash)
        forged[(change.tenant_id, change.seq)] = change.hash
        new.append(ff.change_line(change))
    ek.write_lines(out, new)
    for c in data["chains"]:
        c["head"] = heads[c["tenant_id"]].hex()
    data["files"][0] = ff.file_facts(out / "changes.jsonl")
    if rewrite_records:
        prev = bytes(32).hex()
        records = []
        for text in (out / "records.jsonl").read_text("utf-8").splitlines():
            record = json.loads(text)
            body = canonical.loads(record["body"])
            for h in body.get("heads", []):
                h["hash"] = forged.get((h["tenant_id"], h["seq"]), h["hash"])
            record["body"] = canonical.jsonb_text(body)
            record["prev_hash"] = prev
            record["hash"] = prev = canonical.link(bytes.fromhex(prev), record["body"]).hex()
            records.append(json.dumps(record) + "\n")
        (out / "records.jsonl").write_text("".join(records), encoding="utf-8")
        data["record"]["prev_hash"] = prev
    body = canonical.loads(data["record"]["body"])
    body["manifest_sha256"] = ff.core_sha256(data)
    body["heads"] = [{"tenant_id": c["tenant_id"], "seq": c["last_seq"], "hash": c["head"]}
                     for c in data["chains"]]
    text = canonical.jsonb_text(body)
    data["record"]["body"] = text
    data["record"]["hash"] = hashlib.sha256(
        bytes.fromhex(data["record"]["prev_hash"]) + text.encode()).hexdigest()
    ek.write_manifest(out, data)


def test_csv_verifies_and_an_edited_cell_is_caught(sealed: Database, tmp_path: Path) -> None:
    out = tmp_path / "c"
    ek.exported(sealed, out, "--format", "csv")
    assert (out / "changes.csv").is_file() and not (out / "changes.jsonl").exists()
    ek.verified(out)
    text = (out / "changes.csv").read_text("utf-8").splitlines(keepends=True)
    text[3] = text[3].replace("INSERT", "DELETE", 1)
    (out / "changes.csv").write_text("".join(text), encoding="utf-8")
    found = ek.problem(out)
    assert (found["file"], found["line"]) == ("changes.csv", 4)


def test_filters_leave_stubs_that_keep_the_chain(sealed: Database, tmp_path: Path) -> None:
    out = tmp_path / "f"
    ek.exported(sealed, out, "--table", "patients")
    report = ek.verified(out)
    full = ek.full_lines(out)
    assert full and {x["table_name"] for x in full} == {"public.patients"}
    assert report["stubs"] == report["lines"] - len(full) > 0
    stub = next(canonical.loads(x) for x in ek.lines(out) if '"stub": true' in x)
    assert set(stub) == {"seq", "tenant_id", "stub", "hash"}
    # A stub cannot smuggle data back in.
    lines = ek.lines(out)
    i = next(i for i, x in enumerate(lines) if '"stub": true' in x)
    lines[i] = lines[i].replace('"stub": true', '"stub": true, "note": "x"')
    ek.write_lines(out, lines)
    assert ek.problem(out)["line"] == i + 1


def test_tenant_filter_exports_whole_chains(sealed: Database, tmp_path: Path) -> None:
    tenant = sealed.sql("SELECT tenant_id FROM simtrail.chain_heads WHERE tenant_id IS NOT NULL"
                        " ORDER BY 1 LIMIT 1")[0]["tenant_id"]
    ek.exported(sealed, tmp_path / "t", "--tenant", tenant)
    ek.verified(tmp_path / "t")
    assert [c["tenant_id"] for c in ek.manifest(tmp_path / "t")["chains"]] == [tenant]
    assert {x["tenant_id"] for x in ek.full_lines(tmp_path / "t")} == {tenant}


def test_bad_input_writes_nothing(sealed: Database, tmp_path: Path) -> None:
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    for args, needle in [
        (["--out", str(full)], "never overwrites"),
        (["--out", str(tmp_path / "a"), "--tenant", "no-such-class"], "no-such-class"),
        (["--out", str(tmp_path / "a"), "--redact", "nodot"], "TABLE.COLUMN"),
        (["--out", str(tmp_path / "a"), "--since", "yesterday"], "refused as a time"),
        (["--out", str(tmp_path / "a"), "--table", "patinets"], "public.patinets"),
        (["--out", str(tmp_path / "a"), "--redact", "patients.id"], "primary-key"),
        (["--out", str(tmp_path / "a"), "--redact", "nosuch.col"], "public.nosuch"),
        (["--out", str(tmp_path / "a"), "--after", str(tmp_path / "none")], "no such"),
        (["--out", str(tmp_path / "a"), "--sign-key", str(tmp_path / "nokey")], "nokey"),
    ]:
        done = run_cli("export", *args, dsn=sealed.dsn)
        assert done.exit_code == 2, (args, done.stderr)
        assert needle in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]
    assert [p.name for p in full.iterdir()] == ["keep.txt"]
    assert sealed.sql("SELECT count(*) AS n FROM simtrail.chain_records"
                      " WHERE kind = 'export'")[0]["n"] == 0
    assert run_cli("verify", str(tmp_path / "none")).exit_code == 2


def test_an_export_of_a_tampered_database_refuses(sealed: Database, tmp_path: Path) -> None:
    sealed.sql("SET session_replication_role = replica;"
               " UPDATE simtrail.changes SET new_data = new_data || '{\"room_number\": \"X\"}'"
               " WHERE id = (SELECT max(change_id) FROM simtrail.seals)")
    done = ek.export(sealed, tmp_path / "x")
    assert done.exit_code == 2 and "does not match its seal" in done.stderr
    assert not (tmp_path / "x").exists() and list(tmp_path.iterdir()) == []


def test_the_summary_page_is_self_contained(out: Path) -> None:
    page = (out / "summary.html").read_text("utf-8")
    for needle in ("Changes per actor", "<svg", "Activity", "Verification status"):
        assert needle in page
    for network in ("http://", "https://", "src=", "@import", "url("):
        assert network not in page
    assert json.loads((out / "manifest.json").read_text())["files"][1]["name"] == "summary.html"


def _status(directory: Path) -> str:
    page = (directory / "summary.html").read_text("utf-8")
    start = page.index("Verification status")
    return page[start:page.index("</p>", start)]


def test_the_summary_status_states_what_was_checked(sealed: Database, out: Path,
                                                     tmp_path: Path) -> None:
    """The status line is the writer's own counts, key and link, never fixed text."""
    count = sealed.sql("SELECT count(*) AS n FROM simtrail.seals")[0]["n"]
    chains = sealed.sql("SELECT count(*) AS n FROM simtrail.chain_heads")[0]["n"]
    first = _status(out)
    assert f"{count} change(s) in {chains} chain(s) were re-encoded" in first
    assert "not signed" in first and "previous export" not in first
    ident = sealed.sql("SELECT system_identifier::text AS s FROM pg_control_system()")[0]["s"]
    assert ident in first
    # One more change, then a signed export that continues the first.
    sealed.sql("UPDATE public.patients SET room_number = 'C-3'"
               " WHERE id = (SELECT max(id::text)::uuid FROM public.patients)")
    added = ek.seal(sealed)
    key = _keys(tmp_path, "k")
    ek.exported(sealed, tmp_path / "next", "--after", str(out), "--sign-key", str(key))
    second = _status(tmp_path / "next")
    assert f"{added} change(s) in" in second
    assert ek.manifest(out)["record"]["hash"] in second
    assert ek.manifest(tmp_path / "next")["signature"]["key_id"] in second


def test_time_and_actor_filters(sealed: Database, tmp_path: Path) -> None:
    times = sealed.sql("SELECT min(changed_at) AS lo, max(changed_at) AS hi FROM simtrail.seals")[0]
    middle = times["lo"] + (times["hi"] - times["lo"]) / 2
    ek.exported(sealed, tmp_path / "t", "--since", middle.isoformat())
    ek.verified(tmp_path / "t")
    full = ek.full_lines(tmp_path / "t")
    assert full and all(x["changed_at"] >= canonical.utc_text(middle) for x in full)
    ek.exported(sealed, tmp_path / "u", "--until", middle.isoformat())
    ek.verified(tmp_path / "u")
    full = ek.full_lines(tmp_path / "u")
    assert full and all(x["changed_at"] < canonical.utc_text(middle) for x in full)
    actor = sealed.sql("SELECT actor ->> 'session_user' AS who FROM simtrail.archive"
                       " UNION SELECT actor ->> 'session_user' FROM"
                       " simtrail.simulation_tenant_changes LIMIT 1")[0]["who"]
    ek.exported(sealed, tmp_path / "a", "--actor", actor)
    ek.verified(tmp_path / "a")
    assert all(x["actor"]["session_user"] == actor for x in ek.full_lines(tmp_path / "a"))
    ek.exported(sealed, tmp_path / "n", "--actor", "nobody@example.org")
    report = ek.verified(tmp_path / "n")
    assert report["stubs"] == report["lines"] > 0


def test_people_output(out: Path) -> None:
    done = run_cli("verify", str(out))
    assert done.exit_code == 0 and done.stdout.startswith("verified: ")
    lines = ek.lines(out)
    del lines[1]
    ek.write_lines(out, lines)
    done = run_cli("verify", str(out))
    assert done.exit_code == 1 and done.stdout == ""
    assert done.stderr.startswith("simtrail: error: not verified: changes.jsonl:2: expected seq")
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_record_removed_or_edited_is_caught(out: Path) -> None:
    path = out / "records.jsonl"
    records = path.read_text("utf-8").splitlines(keepends=True)
    path.write_text("".join(records[1:]), encoding="utf-8")
    found = ek.problem(out)
    assert found["file"] == "records.jsonl"
    assert ("record chain is broken" in found["message"] if len(records) > 1
            else "records.jsonl has 0 records" in found["message"])
    edited = json.loads(records[-1])
    edited["body"] = edited["body"].replace('"checkpoint"', '"checkpoint", "x": 1', 1)
    path.write_text("".join([*records[:-1], json.dumps(edited) + "\n"]), encoding="utf-8")
    found = ek.problem(out)
    assert found["line"] == len(records) and "edited record" in found["message"]


def test_lines_are_checked_against_the_published_checkpoints(
    sealed: Database, tmp_path: Path
) -> None:
    """A stub's hash is not covered by any line; a checkpoint that published it is."""
    out = tmp_path / "p"
    ek.exported(sealed, out, "--table", "patients")
    records = [json.loads(r) for r in (out / "records.jsonl").read_text("utf-8").splitlines()]
    last: dict[Any, int] = {}
    for r in records:
        for h in canonical.loads(r["body"]).get("heads", []):
            last[h["tenant_id"]] = max(last.get(h["tenant_id"], 0), h["seq"])
    heads = set(last.items())
    lines = ek.lines(out)
    i = next(i for i, x in enumerate(lines) if '"stub": true' in x
             and (canonical.loads(x)["tenant_id"], canonical.loads(x)["seq"]) in heads)
    stub = canonical.loads(lines[i])
    stub["hash"] = "ab" * 32
    lines[i] = canonical.jsonb_text(stub) + "\n"
    ek.write_lines(out, lines)
    found = ek.problem(out)
    assert found["line"] == i + 1 and "checkpoint record" in found["message"]
