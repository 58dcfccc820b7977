"""`simtrail export`: the sealed chains of one snapshot, streamed to files.

Every row is read in one REPEATABLE READ snapshot through a server-side
cursor, so memory stays flat however long the history. Each line's hash is
recomputed here from the data and the seal secret's salts and compared with
its seal: an export of a tampered database fails instead of writing files
that would fail later. The files are written to a sibling directory that is
renamed into place only after the export record has committed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import psycopg
from psycopg.types.json import set_json_loads

from simtrail import __version__, canonical, signing
from simtrail.db import Conn
from simtrail.errors import SimtrailError
from simtrail.export import encode, records, summary
from simtrail.export import fileformat as ff
from simtrail.export.verify import Problem, check_record, load_manifest
from simtrail.sqlfile import query

BATCH = 5000
WRITE_BUFFER = 1 << 20


def q(name: str) -> psycopg.sql.SQL:
    return query("simtrail.export", "sql/queries.sql", name)


@dataclass
class Filters:
    tenants: list[str] | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    tables: list[str] | None = None
    actor: str | None = None
    redact: list[str] = field(default_factory=list)
    format: str = "jsonl"

    def as_json(self) -> dict[str, Any]:
        return {
            "tenants": self.tenants,
            "since": None if self.since is None else canonical.utc_text(self.since),
            "until": None if self.until is None else canonical.utc_text(self.until),
            "tables": self.tables, "actor": self.actor, "redact": self.redact,
            "format": self.format,
        }

    def shows(self, table: str, changed_at: dt.datetime, actor: Any) -> bool:
        """A full line; otherwise a stub (seq and hash only) keeps the chain checkable."""
        if self.tables is not None and table not in self.tables:
            return False
        if self.since is not None and changed_at < self.since:
            return False
        if self.until is not None and changed_at >= self.until:
            return False
        if self.actor is not None:
            values = actor.values() if isinstance(actor, dict) else ()
            return any(str(v) == self.actor for v in values)
        return True

    def redacted(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for item in self.redact:
            table, _, column = item.rpartition(".")
            out.setdefault(qualify(table), set()).add(column)
        return out


def qualify(table: str) -> str:
    return table if "." in table else f"public.{table}"


def redact_spec(text: str) -> str:
    table, dot, column = text.rpartition(".")
    if not dot or not table or not column:
        raise SimtrailError(f"--redact {text!r}: give TABLE.COLUMN, e.g. patients.first_name")
    return f"{qualify(table)}.{column}"


@dataclass
class Plan:
    tenant_id: str | None
    lo: int
    hi: int
    anchor: bytes
    head_seq: int
    head: bytes
    pruned: dict[str, Any] | None = None


def export(
    connect: Callable[[str, bool], Conn], out: Path, filters: Filters, *,
    after: Path | None = None, sign_key: Path | None = None,
    progress: Callable[[int], Any] | None = None,
) -> dict[str, Any]:
    _check_out(out)
    previous = _previous(after) if after is not None else None
    key = signing.load_signer(sign_key) if sign_key is not None else None
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        with connect("export", False) as conn:
            set_json_loads(canonical.loads_utf8, conn)
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            manifest = _write(conn, tmp, filters, previous, progress,
                              None if key is None else key.key_id)
            conn.rollback()
        with connect("export record", False) as conn:
            record, signature = records.append(conn, manifest, key)
            since = int(previous["record"]["id"]) if previous is not None else 0
            manifest["records"] = records.between(conn, tmp, since, int(record["id"]))
            conn.commit()
        manifest["record"] = record
        manifest["signature"] = signature
        (tmp / ff.MANIFEST).write_text(
            json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"out": str(out), "changes": manifest["lines"] - manifest["stubs"],
            "stubs": manifest["stubs"],
            "chains": len(manifest["chains"]), "record_id": record["id"],
            "signed": signature is not None, "counts": manifest["counts"]}


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SimtrailError(f"--out {out}: exists and is not an empty directory; an export"
                            " never overwrites files")
    if not out.parent.is_dir():
        raise SimtrailError(f"--out {out}: directory {out.parent} does not exist")


def _previous(after: Path) -> dict[str, Any]:
    try:
        manifest = load_manifest(after)
        check_record(manifest, None)
    except Problem as exc:
        raise SimtrailError(f"--after {after}: {exc.line_text()}") from None
    return manifest


def _plans(conn: Conn, filters: Filters, previous: dict[str, Any] | None) -> list[Plan]:
    heads = conn.execute(q("heads"), {"tenants": filters.tenants}).fetchall()
    if filters.tenants is not None:
        missing = set(filters.tenants) - {h["tenant_id"] for h in heads}
        if missing:
            raise SimtrailError(f"no sealed history for tenant {sorted(missing)[0]!r}: unknown"
                                " tenant, or nothing of it sealed yet (run simtrail seal)")
    before = {c["tenant_id"]: c for c in previous["chains"]} if previous else {}
    plans = []
    for h in heads:
        t = h["tenant_id"]
        b = conn.execute(q("bounds"), {"tenant": t, "since": filters.since,
                                        "until": filters.until}).fetchone() or {}
        first = b.get("first_seq") or h["seq"] + 1
        if t in before:
            lo = int(before[t]["last_seq"]) + 1
        elif filters.since is not None:
            lo = b.get("since_seq") or h["seq"] + 1
        else:
            lo = 1
        hi = h["seq"] if filters.until is None else (b.get("until_seq") or 0)
        hi = max(hi, lo - 1)
        plan = Plan(t, lo, hi, b"", h["seq"], bytes(h["hash"]))
        if lo < first:
            # Retention dropped seals this export would start with: continue
            # from the hash its prune record names for the last one dropped.
            plan.pruned = {"first_seq": lo, "last_seq": first - 1}
            plan.lo = lo = first
            plan.hi = hi = max(hi, lo - 1)
        plan.anchor = _anchor(conn, t, lo)
        if plan.pruned is not None:
            plan.pruned["last_hash"] = plan.anchor.hex()
        if t in before and plan.pruned is None and before[t]["head"] != plan.anchor.hex():
            raise SimtrailError(f"--after: tenant {t!r} seq {lo - 1} is not the previous"
                                " export's head in this database: another database, or a"
                                " rewritten chain")
        plans.append(plan)
    return plans


def _check_tables(conn: Conn, filters: Filters) -> None:
    """A misspelt table would export nothing but stubs, or redact nothing: refuse it."""
    known = {r["table_name"]: r["pk_columns"] for r in conn.execute(q("known_tables"))}
    for table in filters.tables or []:
        if table not in known:
            raise SimtrailError(f"--table {table}: no such captured (or retired) table")
    for table, columns in filters.redacted().items():
        if table not in known:
            raise SimtrailError(f"--redact {table}: no such captured (or retired) table")
        keys = sorted(columns & set(known[table] or []))
        if keys:
            raise SimtrailError(
                f"--redact {table}.{keys[0]}: a primary-key column is in every line's row_pk,"
                " which the chain hashes as it is, so it cannot be redacted")


def _anchor(conn: Conn, tenant: str | None, lo: int) -> bytes:
    if lo <= 1:
        return canonical.ZERO_HASH
    row = conn.execute(q("seal_at"), {"tenant": tenant, "seq": lo - 1}).fetchone()
    if row is not None:
        return bytes(row["hash"])
    row = conn.execute(q("prune_anchor"), {"tenant": tenant, "seq": lo - 1}).fetchone()
    if row is None:
        raise SimtrailError(f"tenant {tenant!r}: seq {lo - 1} is neither sealed nor named by"
                            " a prune record, so the chain has no anchor to start from;"
                            " run simtrail verify --db")
    return bytes.fromhex(row["hash"])


def _write(conn: Conn, tmp: Path, filters: Filters, previous: dict[str, Any] | None,
           progress: Callable[[int], Any] | None, key_id: str | None) -> dict[str, Any]:
    secret_row = conn.execute(q("secret")).fetchone()
    if secret_row is None:
        raise SimtrailError("simtrail.seal_secret is empty: reinstall simtrail")
    secret = bytes(secret_row["secret"])
    ident = conn.execute(q("system_identifier")).fetchone() or {}
    _check_tables(conn, filters)
    plans = _plans(conn, filters, previous)
    data_file = ff.CSV if filters.format == "csv" else ff.JSONL
    stats = summary.Stats()
    chains = []
    redacted = filters.redacted()
    # One write(2) a megabyte rather than every 8 KiB.
    with (tmp / data_file).open("w", encoding="utf-8", newline="", buffering=WRITE_BUFFER) as f:
        if data_file == ff.CSV:
            f.write(ff.csv_text(ff.CSV_COLUMNS))
        emit = _csv_emit(f) if data_file == ff.CSV else f.write
        for plan in plans:
            lines, stubs = _chain(conn, plan, secret, filters, redacted, emit, stats, progress)
            entry: dict[str, Any] = {
                "tenant_id": plan.tenant_id, "first_seq": plan.lo, "last_seq": plan.hi,
                "anchor": plan.anchor.hex(), "head": _head(conn, plan).hex(),
                "lines": lines, "stubs": stubs}
            if plan.pruned is not None:
                entry["pruned"] = plan.pruned
            chains.append(entry)
    after = None
    if previous is not None:
        after = {"manifest_sha256": ff.core_sha256(previous),
                 "record_hash": previous["record"]["hash"]}
    source = summary.Source(
        database=ident.get("database"),
        system_identifier=None if ident.get("system_identifier") is None
        else str(ident["system_identifier"]),
        key_id=key_id, continues=None if after is None else str(after["record_hash"]))
    (tmp / ff.SUMMARY).write_text(summary.html(stats, chains, filters.as_json(), source),
                                  encoding="utf-8")
    return {
        "format": ff.FORMAT, "version": ff.FORMAT_VERSION, "simtrail_version": __version__,
        "system_identifier": None if ident.get("system_identifier") is None
        else str(ident["system_identifier"]),
        "database": ident.get("database"),
        "created_at": canonical.utc_text(dt.datetime.now(dt.UTC)),
        "encoding": "simtrail canonical change v1 (docs/CHAIN.md)",
        "filters": {**filters.as_json(), "after": after},
        "data_file": data_file, "chains": chains, "counts": stats.counts(),
        "lines": stats.lines + stats.stubs, "stubs": stats.stubs, "time_range": stats.time_range(),
        "files": [ff.file_facts(tmp / data_file), ff.file_facts(tmp / ff.SUMMARY)],
    }


def _head(conn: Conn, plan: Plan) -> bytes:
    if plan.hi < plan.lo:
        return plan.anchor
    if plan.hi == plan.head_seq:
        return plan.head
    row = conn.execute(q("seal_at"), {"tenant": plan.tenant_id, "seq": plan.hi}).fetchone()
    assert row is not None
    return bytes(row["hash"])


def _csv_emit(f: TextIO) -> Callable[[str], Any]:
    def emit(line: str) -> None:
        f.write(ff.csv_text(ff.csv_row(canonical.loads(line))))
    return emit


def _can_stream() -> bool:
    """Chunked rows: psycopg 3.2 or later on libpq 17 or later."""
    capabilities = getattr(psycopg, "capabilities", None)
    return capabilities is not None and bool(capabilities.has_stream_chunked())


@contextmanager
def _rows(conn: Conn, plan: Plan) -> Iterator[Iterator[dict[str, Any]]]:
    """The plan's rows, streamed BATCH at a time.

    The server sends each next batch without waiting to be asked (a server-side
    cursor's FETCH waits for each), so it reads and sends while this process
    hashes; it stops when the socket is full, so memory stays flat. Leaving
    the block early (a broken chain) cancels the query. Where chunked rows
    are not to be had, a server-side cursor it is.
    """
    params = {"tenant": plan.tenant_id, "lo": plan.lo, "hi": plan.hi}
    if not _can_stream():
        with conn.cursor(name=f"export_{plan.lo}", binary=True) as named:
            named.itersize = BATCH
            named.execute(q("changes"), params)
            yield iter(named)
        return
    with conn.cursor(binary=True) as cur:
        rows = cur.stream(q("changes"), params, size=BATCH)
        try:
            yield rows
        finally:
            if isinstance(rows, Generator):
                # Now, not when collected: stream() cancels and drains the query.
                rows.close()


def _chain(conn: Conn, plan: Plan, secret: bytes, filters: Filters,
           redacted: dict[str, set[str]], emit: Callable[[str], Any], stats: summary.Stats,
           progress: Callable[[int], Any] | None) -> tuple[int, int]:
    if plan.hi < plan.lo:
        return 0, 0
    prev, expected, lines, stubs = plan.anchor, plan.lo, 0, 0
    keyed = hashlib.sha256(secret)
    tenant_text = canonical.jsonb_text(plan.tenant_id)
    held = {(r["seq"], r["change_id"])
            for r in conn.execute(q("held"), {"tenant": plan.tenant_id})}
    with _rows(conn, plan) as rows:
        for row in rows:
            seq = row["seq"]
            if seq == expected and not row["found"] and (seq, row["change_id"]) in held:
                # Its change is gone; its seal's hash, which the prune record
                # vouches for, carries the chain on.
                emit(ff.stub_line(seq, plan.tenant_id, bytes(row["hash"]).hex(),
                                  row["change_id"]))
                stats.stubs += 1
                stats.held += 1
                prev, expected, lines, stubs = bytes(row["hash"]), seq + 1, lines + 1, stubs + 1
                continue
            if seq != expected or not row["found"]:
                what = "has no seal" if seq != expected else f"(change {row['change_id']}) has"
                raise SimtrailError(
                    f"tenant {plan.tenant_id!r} seq {expected} {what}"
                    f"{' no row in the log or the archive' if row['found'] is False else ''}:"
                    " the database's chain is broken; run simtrail verify --db")
            change = encode.change(row, plan.tenant_id, tenant_text, keyed,
                                   redacted.get(row["table_name"], set()))
            got = canonical.link(prev, change.canon())
            if got != bytes(row["hash"]):
                raise SimtrailError(
                    f"tenant {plan.tenant_id!r} seq {seq} (change {row['change_id']}) does not"
                    " match its seal: the database was changed after sealing; run simtrail"
                    " verify --db")
            stats.recomputed += 1
            if filters.shows(change.table_name, row["changed_at"], change.actor):
                emit(ff.change_line(change))
                stats.add(plan.tenant_id, change, row["changed_at"])
            else:
                emit(ff.stub_line(seq, plan.tenant_id, change.hash))
                stats.stubs += 1
                stubs += 1
            prev, expected, lines = got, seq + 1, lines + 1
            if progress is not None:
                progress(1)
    if expected != plan.hi + 1:
        raise SimtrailError(f"tenant {plan.tenant_id!r} seq {expected} has no seal: the"
                            " database's chain is broken; run simtrail verify --db")
    return lines, stubs
