"""`simtrail verify DIR`: check an export on a machine with no database.

Nothing here imports psycopg or the database side: an auditor runs it on the
files alone. It stops at the first problem and names its file, line and seq.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from simtrail import canonical
from simtrail.export import fileformat as ff
from simtrail.export import parallel

# Checkpoint heads held for the lines to be checked against (about 200 bytes each).
PUBLISHED_CAP = 500_000


class Problem(Exception):
    """The first thing wrong with an export."""

    def __init__(
        self, message: str, *, file: str | None = None, line: int | None = None,
        seq: int | None = None, tenant_id: str | None = None, change_id: int | None = None,
    ) -> None:
        super().__init__(message)
        self.where = {
            "file": file, "line": line, "seq": seq, "tenant_id": tenant_id,
            "change_id": change_id,
        }

    def as_dict(self) -> dict[str, Any]:
        return {"message": str(self), **{k: v for k, v in self.where.items() if v is not None}}

    def line_text(self) -> str:
        w = self.where
        place = ":".join(str(x) for x in (w["file"], w["line"]) if x is not None)
        chain = "" if w["seq"] is None else f" (tenant {w['tenant_id']!r} seq {w['seq']})"
        return f"{place}: {self}{chain}" if place else f"{self}{chain}"


@dataclass
class _Chain:
    first_seq: int
    last_seq: int
    anchor: bytes
    head: bytes
    next_seq: int = 0
    prev: bytes = b""
    lines: int = 0
    stubs: int = 0

    def __post_init__(self) -> None:
        self.next_seq, self.prev = self.first_seq, self.anchor


@dataclass
class Report:
    directory: str
    lines: int = 0
    stubs: int = 0
    chains: int = 0
    signature: str = "absent"
    after: str | None = None
    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"verified": True, "directory": self.directory, "lines": self.lines,
                "stubs": self.stubs, "chains": self.chains, "signature": self.signature,
                "after": self.after}


def load_manifest(directory: Path) -> dict[str, Any]:
    path = directory / ff.MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise Problem("no manifest.json", file=ff.MANIFEST) from None
    except ValueError as exc:
        raise Problem(f"manifest.json is not JSON: {exc}", file=ff.MANIFEST) from None
    if not isinstance(manifest, dict) or manifest.get("format") != ff.FORMAT:
        raise Problem("manifest.json is not a simtrail export manifest", file=ff.MANIFEST)
    if manifest.get("version") != ff.FORMAT_VERSION:
        raise Problem(f"manifest version {manifest.get('version')!r} is not "
                      f"{ff.FORMAT_VERSION}", file=ff.MANIFEST)
    return manifest


def check_record(manifest: dict[str, Any], public_key: bytes | None) -> str:
    """The export record names this manifest's hash; its signature, when asked, is valid."""
    record = manifest.get("record")
    if not isinstance(record, dict):
        raise Problem("manifest.json has no export record", file=ff.MANIFEST)
    try:
        body_text = str(record["body"])
        body = canonical.loads(body_text)
        prev, stated = bytes.fromhex(record["prev_hash"]), bytes.fromhex(record["hash"])
    except (KeyError, ValueError, TypeError):
        raise Problem("the export record is malformed", file=ff.MANIFEST) from None
    if canonical.link(prev, body_text) != stated:
        raise Problem("the export record's hash does not match its body", file=ff.MANIFEST)
    if body.get("kind") != "export" or body.get("manifest_sha256") != ff.core_sha256(manifest):
        raise Problem("the manifest was changed after its export record was written",
                      file=ff.MANIFEST)
    heads = [{"tenant_id": c["tenant_id"], "seq": c["last_seq"], "hash": c["head"]}
             for c in manifest["chains"]]
    if body.get("heads") != heads:
        raise Problem("the export record's heads are not the manifest's", file=ff.MANIFEST)
    signature = manifest.get("signature")
    if public_key is None:
        return "not checked" if signature else "absent"
    if not isinstance(signature, dict):
        raise Problem("the export is not signed", file=ff.MANIFEST)
    key, key_id = _public_key(public_key)
    if signature.get("key_id") != key_id:
        raise Problem("the export was signed with another key", file=ff.MANIFEST)
    try:
        key.verify(bytes.fromhex(str(signature.get("value"))), stated)
    except (InvalidSignature, ValueError):
        raise Problem("bad signature on the export record", file=ff.MANIFEST) from None
    return "valid"


def _public_key(pem: bytes) -> tuple[Ed25519PublicKey, str]:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError:
        raise Problem("the public key file is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise Problem("the public key is not an Ed25519 key")
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return key, hashlib.sha256(raw).hexdigest()[:16]


def _lines(directory: Path, name: str) -> Iterator[tuple[int, Any]]:
    path = directory / name
    if not path.is_file():
        raise Problem(f"{name} is missing", file=name)
    reader = ff.read_csv if name == ff.CSV else ff.read_jsonl
    try:
        yield from reader(path)
    except ff.BadLine as exc:
        raise Problem(str(exc), file=name) from None


def verify(directory: Path, *, after: Path | None = None,
           public_key: bytes | None = None) -> Report:
    manifest = load_manifest(directory)
    report = Report(str(directory))
    try:
        chains = {c["tenant_id"]: _Chain(int(c["first_seq"]), int(c["last_seq"]),
                                         bytes.fromhex(c["anchor"]), bytes.fromhex(c["head"]))
                  for c in manifest["chains"]}
        data_file = manifest["data_file"]
    except (KeyError, ValueError, TypeError):
        raise Problem("manifest.json lists no valid chains", file=ff.MANIFEST) from None
    if data_file not in (ff.JSONL, ff.CSV):
        raise Problem(f"unknown data file {data_file!r}", file=ff.MANIFEST)
    before = None
    if after is not None:
        report.after = check_after(manifest, after, public_key)
        before = load_manifest(after)
    published, held = check_records(directory, manifest, before, public_key)
    counts = None
    if data_file == ff.JSONL and parallel.pays(directory / data_file):
        # Its report is the one-process loop's when the file is sound; on
        # anything wrong, that loop runs from the start to name the first problem.
        counts = parallel.check_lines(directory / data_file, chains, published, held, report)
    if counts is None:
        counts = _check_lines(directory, data_file, chains, published, held, report)
    for tenant, chain in chains.items():
        if chain.next_seq != chain.last_seq + 1:
            raise Problem(f"the chain ends at seq {chain.next_seq - 1}, the manifest says"
                          f" {chain.last_seq}: lines are missing at its end", file=data_file,
                          tenant_id=tenant, seq=chain.next_seq)
        if chain.prev != chain.head:
            raise Problem("the chain's last hash is not the manifest's head", file=data_file,
                          tenant_id=tenant, seq=chain.last_seq)
    _check_counts(manifest, counts, report)
    _check_files(directory, manifest)
    report.chains = len(chains)
    report.signature = check_record(manifest, public_key)
    return report


def _check_lines(directory: Path, data_file: str, chains: dict[Any, _Chain],
                 published: dict[tuple[Any, int], tuple[int, str]],
                 held: set[tuple[Any, Any, Any]], report: Report) -> Counter[tuple[str, str]]:
    """Every line in order, in this process; raises the first problem."""
    counts: Counter[tuple[str, str]] = Counter()
    for number, obj in _lines(directory, data_file):
        try:
            parsed = ff.parse_obj(obj)
        except (ff.BadLine, ValueError) as exc:
            raise Problem(f"not a change line: {exc}", file=data_file, line=number) from None
        seq, tenant = (parsed.seq, parsed.tenant_id) if isinstance(parsed, ff.Change) else (
            parsed[0], parsed[1])
        where: dict[str, Any] = {"file": data_file, "line": number, "seq": seq,
                                 "tenant_id": tenant}
        chain = chains.get(tenant)
        if chain is None:
            raise Problem("a line of a tenant the manifest does not list", **where)
        if seq != chain.next_seq:
            what = "a line is missing before it" if seq > chain.next_seq else (
                "a line inserted, repeated or out of order")
            raise Problem(f"expected seq {chain.next_seq}: {what}", **where)
        if isinstance(parsed, ff.Change):
            try:
                got = canonical.link(chain.prev, parsed.canon())
            except (KeyError, ValueError, TypeError) as exc:
                raise Problem(f"a shown column has no salt or a bad one ({exc})",
                              change_id=parsed.change_id, **where) from None
            if got.hex() != parsed.hash:
                raise Problem("the line does not hash to its chain's next hash: an edited"
                              " value, or an edited line before it", change_id=parsed.change_id,
                              **where)
            counts[(parsed.table_name, parsed.operation)] += 1
            chain.prev = got
        else:
            if parsed[3] is not None and (tenant, seq, parsed[3]) not in held:
                raise Problem("a held line that no prune record in records.jsonl holds", **where)
            chain.prev = bytes.fromhex(parsed[2])
            chain.stubs += 1
            report.stubs += 1
        if (checkpoint := published.get((tenant, seq))) is not None and (
                checkpoint[1] != chain.prev.hex()):
            raise Problem(f"checkpoint record {checkpoint[0]} published another hash for"
                          " this seq", **where)
        chain.lines += 1
        chain.next_seq += 1
        report.lines += 1
    return counts


def check_records(directory: Path, manifest: dict[str, Any], before: dict[str, Any] | None,
                  public_key: bytes | None
                  ) -> tuple[dict[tuple[Any, int], tuple[int, str]], set[tuple[Any, Any, Any]]]:
    """records.jsonl is the record chain up to the export record, and holds the
    prune records that every `pruned` range of the manifest starts from.

    Returns the heads its checkpoints published inside this export's chains,
    (tenant, seq) -> (record id, hash), for the line of that seq to be checked
    against. Each one pins its line and, through the links, the full lines
    before it back to the nearest stub (a stub's hash is stated, not derived,
    so the tie ends there). Past PUBLISHED_CAP heads only each chain's last
    one is kept, so memory stays bounded.
    With a public key, every record signed by that key must verify.
    """
    key = _public_key(public_key) if public_key is not None else None
    ranges = {c["tenant_id"]: (c["first_seq"], c["last_seq"]) for c in manifest["chains"]}
    published: dict[tuple[Any, int], tuple[int, str]] = {}
    held: set[tuple[Any, Any, Any]] = set()
    last: dict[Any, tuple[int, int, str]] = {}
    info = manifest.get("records")
    if not isinstance(info, dict):
        raise Problem("the manifest does not list records.jsonl", file=ff.MANIFEST)
    after_id = info.get("after_id")
    if before is not None and after_id != before["record"]["id"]:
        raise Problem("records.jsonl does not start at the previous export's record",
                      file=ff.RECORDS)
    prev: str | None = before["record"]["hash"] if before is not None else (
        canonical.ZERO_HASH.hex() if after_id == 0 else None)
    prunes: set[tuple[Any, Any, Any]] = set()
    count = 0
    for number, obj in _lines(directory, ff.RECORDS):
        try:
            body_text, stated = str(obj["body"]), str(obj["hash"])
            body = canonical.loads(body_text)
            linked = canonical.link(bytes.fromhex(obj["prev_hash"]), body_text).hex()
        except (KeyError, ValueError, TypeError):
            raise Problem("not a chain record", file=ff.RECORDS, line=number) from None
        if prev is not None and obj["prev_hash"] != prev:
            raise Problem("the record chain is broken here: a record is missing or"
                          " inserted before it", file=ff.RECORDS, line=number)
        if linked != stated or body.get("kind") != obj.get("kind"):
            raise Problem("the record does not hash to its hash: an edited record",
                          file=ff.RECORDS, line=number)
        if key is not None and obj.get("signature") and obj.get("key_id") == key[1]:
            try:
                key[0].verify(bytes.fromhex(obj["signature"]), bytes.fromhex(stated))
            except (InvalidSignature, ValueError):
                raise Problem("bad signature on this record", file=ff.RECORDS,
                              line=number) from None
        if body.get("kind") == "prune":
            for r in body.get("ranges", []):
                prunes.add((r.get("tenant_id"), r.get("last_seq"), r.get("last_hash")))
            for h in body.get("held", []):
                held.add((h.get("tenant_id"), h.get("seq"), h.get("change_id")))
        elif body.get("kind") == "checkpoint":
            for h in body.get("heads", []):
                span = ranges.get(h.get("tenant_id"))
                seq, tenant = h.get("seq", 0), h.get("tenant_id")
                if span is None or not span[0] <= seq <= span[1]:
                    continue
                if len(published) < PUBLISHED_CAP:
                    published[(tenant, seq)] = (obj.get("id"), h.get("hash"))
                if seq >= last.get(tenant, (0, 0, ""))[0]:
                    last[tenant] = (seq, obj.get("id"), h.get("hash"))
        prev, count = stated, count + 1
    if count != info.get("count"):
        raise Problem(f"records.jsonl has {count} records, the manifest says"
                      f" {info.get('count')}", file=ff.RECORDS)
    if prev is not None and prev != manifest["record"]["prev_hash"]:
        raise Problem("records.jsonl does not end where the export record begins",
                      file=ff.RECORDS)
    for chain in manifest["chains"]:
        pruned = chain.get("pruned")
        if pruned and (chain["tenant_id"], pruned["last_seq"], pruned["last_hash"]) not in prunes:
            raise Problem(f"no prune record names seq {pruned['last_seq']} with the hash this"
                          " chain starts from", file=ff.RECORDS, tenant_id=chain["tenant_id"],
                          seq=pruned["last_seq"])
    for tenant, (seq, record_id, hash_hex) in last.items():
        published[(tenant, seq)] = (record_id, hash_hex)
    return published, held


def _check_counts(manifest: dict[str, Any], counts: Counter[tuple[str, str]],
                  report: Report) -> None:
    mine: dict[str, dict[str, int]] = {}
    for (table, op), n in sorted(counts.items()):
        mine.setdefault(table, {})[op] = n
    if mine != manifest.get("counts"):
        raise Problem("the counts per table and operation are not the manifest's",
                      file=ff.MANIFEST)
    if manifest.get("lines") != report.lines or manifest.get("stubs") != report.stubs:
        raise Problem(f"the manifest counts {manifest.get('lines')} lines and "
                      f"{manifest.get('stubs')} stubs; the file has {report.lines} and"
                      f" {report.stubs}", file=ff.MANIFEST)
    report.counts = mine


def _check_files(directory: Path, manifest: dict[str, Any]) -> None:
    for listed in manifest.get("files", []):
        name = str(listed.get("name"))
        path = directory / name
        if "/" in name or not path.is_file():
            raise Problem(f"{name} is missing", file=name)
        facts = ff.file_facts(path)
        for key in ("sha256", "bytes", "lines"):
            if facts[key] != listed.get(key):
                raise Problem(f"its {key} is {facts[key]}, the manifest says"
                              f" {listed.get(key)}", file=name)


def check_after(manifest: dict[str, Any], previous: Path, public_key: bytes | None) -> str:
    """This export continues the previous one's heads: no gap, no overlap."""
    try:
        before = load_manifest(previous)
        check_record(before, public_key)
    except Problem as exc:
        raise Problem(f"the previous export {previous}: {exc.line_text()}") from None
    link = manifest.get("filters", {}).get("after")
    if not isinstance(link, dict) or link.get("manifest_sha256") != ff.core_sha256(before):
        raise Problem(f"this export does not continue {previous}", file=ff.MANIFEST)
    mine = {c["tenant_id"]: c for c in manifest["chains"]}
    for old in before["chains"]:
        new = mine.get(old["tenant_id"])
        if new is None:
            if _tenant_filtered_out(manifest, old["tenant_id"]):
                continue
            raise Problem("a chain of the previous export does not continue here",
                          file=ff.MANIFEST, tenant_id=old["tenant_id"])
        start, anchor = old["last_seq"] + 1, old["head"]
        pruned = new.get("pruned")
        if isinstance(pruned, dict) and pruned.get("first_seq") == start:
            # Retention dropped what followed the previous export before this
            # one ran; its prune record's last hash is where the chain goes on.
            start, anchor = int(pruned["last_seq"]) + 1, pruned.get("last_hash")
        if new["first_seq"] != start or new["anchor"] != anchor:
            raise Problem(f"the chain starts at seq {new['first_seq']} from "
                          f"{new['anchor'][:16]}…, the previous export ends at seq"
                          f" {old['last_seq']} with {old['head'][:16]}…: a gap or an overlap",
                          file=ff.MANIFEST, tenant_id=old["tenant_id"], seq=new["first_seq"])
    return str(previous)


def _tenant_filtered_out(manifest: dict[str, Any], tenant: str | None) -> bool:
    tenants = manifest.get("filters", {}).get("tenants")
    return tenants is not None and tenant not in tenants
