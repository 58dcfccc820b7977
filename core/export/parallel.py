"""verify's line checks spread over the cores, for a large JSONL data file.

Workers hash whole-line chunks of the file, each line against the hash the
line before it states; this process links each chunk's first line of each
tenant to the chain, and checks order, stubs and checkpoints in file order.
At anything wrong it gives up, having changed nothing, and the caller runs
its one-process loop, which names the first problem exactly as always.
"""

from __future__ import annotations

import copy
import os
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simtrail import canonical
from simtrail.export import fileformat as ff

if TYPE_CHECKING:
    from simtrail.export.verify import Report, _Chain

# Past this size the lines are checked by a process per core (the pool's start
# costs about as much as this many bytes take in one process).
PARALLEL_BYTES = 16 << 20
# The bytes one worker checks at a time (on a line boundary): a few thousand lines.
CHUNK_BYTES = 4 << 20


def _cores() -> int:
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


def pays(path: Path) -> bool:
    try:
        return _cores() > 1 and path.stat().st_size >= PARALLEL_BYTES
    except OSError:
        return False


@dataclass
class _Scan:
    """One chunk's lines, checked as far as a chunk can be alone.

    Each full line but a tenant's first in the chunk is linked to the line
    before it of its tenant, whose stated hash is what the chain holds there
    if that line checks. Each tenant's first line is left to the caller, who
    has the chain's hash before the chunk: `firsts` holds its canonical text.
    """

    ok: bool
    # (tenant, seq, stated hash, held change id or None, is a stub) per line
    lines: list[tuple[Any, int, str, int | None, bool]] = field(default_factory=list)
    firsts: dict[int, str] = field(default_factory=dict)
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)


def _scan_chunk(path: str, start: int, end: int) -> _Scan:
    """A worker's part: bytes start..end of the data file (whole lines)."""
    try:
        with open(path, "rb") as f:
            f.seek(start)
            text = f.read(end - start).decode("utf-8")
        rows = text.split("\n")
        if rows[-1] == "":
            rows.pop()
        scan = _Scan(True)
        tenants: dict[Any, Any] = {}
        prev: dict[Any, bytes] = {}
        for line in rows:
            parsed = ff.parse_obj(canonical.loads(line))
            if isinstance(parsed, ff.Change):
                # One object per tenant, so that the result pickles it once.
                tenant = tenants.setdefault(parsed.tenant_id, parsed.tenant_id)
                canon = parsed.canon()
                if tenant in prev:
                    got = canonical.link(prev[tenant], canon)
                    if got.hex() != parsed.hash:
                        return _Scan(False)
                else:
                    scan.firsts[len(scan.lines)] = canon
                    got = bytes.fromhex(parsed.hash)
                prev[tenant] = got
                scan.counts[(parsed.table_name, parsed.operation)] += 1
                scan.lines.append((tenant, parsed.seq, parsed.hash, None, False))
            else:
                seq, stub_tenant, hash_hex, held_id = parsed
                tenant = tenants.setdefault(stub_tenant, stub_tenant)
                prev[tenant] = bytes.fromhex(hash_hex)
                scan.lines.append((tenant, seq, hash_hex, held_id, True))
    except Exception:
        # Whatever it is, the one-process loop names it (or finds it fine).
        return _Scan(False)
    return scan


def _chunks(path: Path) -> Iterator[tuple[int, int]]:
    size = path.stat().st_size
    with path.open("rb") as f:
        start = 0
        while start < size:
            f.seek(start + CHUNK_BYTES)
            f.readline()
            end = min(max(f.tell(), start + 1), size)
            yield start, end
            start = end


def check_lines(path: Path, chains: dict[Any, _Chain],
                    published: dict[tuple[Any, int], tuple[int, str]],
                    held: set[tuple[Any, Any, Any]],
                    report: Report) -> Counter[tuple[str, str]] | None:
    """_check_lines' checks, the lines' hashing spread over the cores.

    Returns None, having changed nothing, at the first thing _check_lines
    would raise for (or anything else odd): it then runs and names it exactly.
    The chunks' results are taken in file order, a few ahead at most, so
    memory stays flat.
    """
    work = {t: copy.copy(c) for t, c in chains.items()}
    counts: Counter[tuple[str, str]] = Counter()
    lines = stubs = 0
    cores = _cores()
    try:
        pool = ProcessPoolExecutor(cores)
    except (OSError, NotImplementedError):
        # No processes to be had here (no /dev/shm, a sandbox): one process it is.
        return None
    try:
        bounds = _chunks(path)
        pending: deque[Future[_Scan]] = deque()

        def submit() -> None:
            if (b := next(bounds, None)) is not None:
                pending.append(pool.submit(_scan_chunk, str(path), *b))

        for _ in range(2 * cores):
            submit()
        while pending:
            scan = pending.popleft().result()
            submit()
            if not scan.ok:
                return None
            firsts = scan.firsts
            for i, (tenant, seq, stated, held_id, stub) in enumerate(scan.lines):
                chain = work.get(tenant)
                if chain is None or seq != chain.next_seq:
                    return None
                if stub:
                    if held_id is not None and (tenant, seq, held_id) not in held:
                        return None
                    chain.stubs += 1
                    stubs += 1
                elif (canon := firsts.get(i)) is not None and (
                        canonical.link(chain.prev, canon).hex() != stated):
                    return None
                # A full line's hash checked is its stated one.
                chain.prev = bytes.fromhex(stated)
                if (checkpoint := published.get((tenant, seq))) is not None and (
                        checkpoint[1] != chain.prev.hex()):
                    return None
                chain.lines += 1
                chain.next_seq += 1
                lines += 1
            counts.update(scan.counts)
    except (OSError, BrokenProcessPool):
        # A worker killed (out of memory?) or no pipe to it: one process then.
        return None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    for tenant, chain in work.items():
        chains[tenant].__dict__.update(chain.__dict__)
    report.lines += lines
    report.stubs += stubs
    return counts
