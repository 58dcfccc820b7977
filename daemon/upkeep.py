"""The daemon's own upkeep of the log after rows left it: VACUUM, then packing.

Compaction and retention delete rows from simtrail.changes; until a VACUUM
their space is neither reusable by new changes nor, at the end of the table,
given back. The daemon does not leave that to autovacuum (which may be off,
or far behind on a busy log): when rows have left the log and the interval
has passed, it runs VACUUM on a connection of its own, in a thread, so ticks
and lease renewals go on meanwhile. A stop (SIGTERM) or a lost lease cancels
it at once: VACUUM is safe to cancel and the next one starts over.

Plain VACUUM only, never FULL: it takes SHARE UPDATE EXCLUSIVE, which no
writer waits for. Truncating empty pages at the table's end takes ACCESS
EXCLUSIVE for a moment, only when it can get it without waiting, and gives it
up as soon as another session queues for the table (as autovacuum does).
VACUUM returns only the end of the table, and compaction leaves rows all
over it, so the upkeep moves the rows off the end into the space VACUUM
freed (plain DELETE and INSERT of the same rows under the compaction lock)
and vacuums again; REINDEX CONCURRENTLY then shrinks the indexes.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from simtrail.daemon.health import Status
from simtrail.daemon.queries import q
from simtrail.db import Conn, connect
from simtrail.logs import get
from simtrail.settings import first_line

log = get("simtrail.daemon")

# How long a cancel request may take to reach the server.
CANCEL_TIMEOUT = 3.0


# Rows are moved a slice of pages at a time, each slice one transaction
# under the compaction lock: a rewind waits for one slice at most.
SLICE_PAGES = 2048
# Packing is worth its writes only when the log has this much more pages
# than its rows need, and aims this close to the rows' own size.
PACK_WHEN = 1.25
PACK_TO = 1.05


@dataclass
class Outcome:
    """What one upkeep run did: the fields of its log line."""

    result: str  # done, cancelled or failed
    seconds: float
    bytes_before: int = 0
    bytes_after: int = 0
    pages_before: int = 0
    pages_after: int = 0
    rows_moved: int = 0
    reindexed: bool = False
    error: str | None = None

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "result": self.result,
            "seconds": round(self.seconds, 3),
            "log_bytes_before": self.bytes_before,
            "log_bytes_after": self.bytes_after,
            "log_bytes_returned": max(0, self.bytes_before - self.bytes_after),
            "heap_pages_before": self.pages_before,
            "heap_pages_after": self.pages_after,
            "rows_moved": self.rows_moved,
            "reindexed": self.reindexed,
        }
        if self.error is not None:
            out["error"] = self.error
        return out


def log_bytes(conn: Conn) -> int:
    row = conn.execute(q("log_bytes")).fetchone()
    return int(row["bytes"]) if row else 0


def log_pages(conn: Conn) -> tuple[int, int]:
    """The log's heap pages, and how many its rows would fill packed."""
    row = conn.execute(q("log_pages")).fetchone()
    pages: dict[str, Any] = row["pages"] if row else {}
    return int(pages.get("pages", 0)), int(pages.get("packed_pages", 0))


class _Cancelled(Exception):
    pass


def _pack(conn: Conn, out: Outcome, cancel: threading.Event | None) -> None:
    """Move the rows off the log's last pages into the space VACUUM freed.

    From the end backwards, so a run cut short has still emptied an end. A
    slice whose rows landed in its own range found no room further ahead:
    packing stops there.
    """
    pages, packed = log_pages(conn)
    if pages <= packed * PACK_WHEN + 16:
        return
    target = int(packed * PACK_TO) + 8
    hi = pages
    while hi > target:
        if cancel is not None and cancel.is_set():
            raise _Cancelled
        lo = max(target, hi - SLICE_PAGES)
        with conn.transaction():
            row = conn.execute(q("relocate_log_rows"), {"from_page": lo, "to_page": hi}).fetchone()
        moved: dict[str, Any] = row["moved"] if row else {}
        out.rows_moved += int(moved.get("moved") or 0)
        landed = moved.get("landed_max_page")
        if landed is not None and int(landed) >= lo:
            return
        hi = lo


def _reindex(conn: Conn, cancel: threading.Event | None) -> None:
    for row in conn.execute(q("reindex_leftovers")).fetchall():
        conn.execute(q("drop_index_concurrently").format(index=sql.SQL(row["name"])))
    if cancel is not None and cancel.is_set():
        raise _Cancelled
    conn.execute(q("reindex_log"))


def upkeep_log(conn: Conn, cancel: threading.Event | None = None) -> Outcome:
    """The log's upkeep on `conn` (autocommit, no statement timeout).

    VACUUM; when the log holds far more pages than its rows need, move the
    rows off its end and VACUUM again, which cuts the emptied end off; when
    that halved the table, rebuild its indexes concurrently (they keep their
    size otherwise). Nothing here takes a lock a writer waits for.

    When `cancel` is set while it runs, the running statement is cancelled
    and the outcome says "cancelled"; every step is safe to cut short. The
    benchmark calls this too, so it measures what the daemon does.
    """
    started = time.monotonic()
    out = Outcome("done", 0.0, bytes_before=log_bytes(conn))
    done = threading.Event()

    def watch() -> None:
        assert cancel is not None
        while not done.is_set():
            if cancel.wait(0.05):
                if not done.is_set():
                    conn.cancel_safe(timeout=CANCEL_TIMEOUT)
                return

    watcher = threading.Thread(target=watch, name="simtrail-vacuum-cancel", daemon=True)
    if cancel is not None:
        watcher.start()
    try:
        conn.execute(q("vacuum_log"))
        out.pages_before = log_pages(conn)[0]
        _pack(conn, out, cancel)
        if out.rows_moved:
            conn.execute(q("vacuum_log"))
        out.pages_after = log_pages(conn)[0]
        if out.pages_after * 2 <= out.pages_before:
            _reindex(conn, cancel)
            out.reindexed = True
    except (psycopg.errors.QueryCanceled, _Cancelled) as exc:
        cancelled = cancel is not None and cancel.is_set()
        out.result = "cancelled" if cancelled else "failed"
        out.error = None if cancelled else first_line(str(exc))
    finally:
        done.set()
        if cancel is not None:
            watcher.join()
    if out.result != "failed" and not conn.broken:
        out.bytes_after = log_bytes(conn)
    out.seconds = time.monotonic() - started
    return out


class Upkeep:
    """Starts the VACUUM when due, runs it in a thread, cancels it on request."""

    def __init__(self, dsn: str, status: Status) -> None:
        self._dsn = dsn
        self._status = status
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self._last_start = 0.0  # monotonic; 0: never
        self.rows_removed = 0  # rows compaction and retention took out since the last start

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def removed(self, rows: int) -> None:
        self.rows_removed += max(0, rows)

    def due(self, interval: float, now: float) -> bool:
        if interval <= 0 or self.rows_removed <= 0 or self.running:
            return False
        return self._last_start == 0.0 or now - self._last_start >= interval

    def maybe_start(self, interval: float) -> bool:
        """Start a VACUUM when one is due; True when it started."""
        now = time.monotonic()
        if not self.due(interval, now):
            return False
        self._last_start = now
        removed, self.rows_removed = self.rows_removed, 0
        self._cancel = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(removed, self._cancel), name="simtrail-vacuum", daemon=True
        )
        with self._status.lock:
            self._status.vacuum_running = True
        self._thread.start()
        return True

    def _run(self, removed: int, cancel: threading.Event) -> None:
        started = time.monotonic()
        try:
            # No statement timeout: a large log takes as long as it takes,
            # and a stop cancels it anyway.
            with connect(self._dsn, "vacuum", statement_timeout_ms=0) as conn:
                outcome = upkeep_log(conn, cancel)
        except Exception as exc:  # the loop must outlive any failure here
            outcome = Outcome("failed", time.monotonic() - started, error=first_line(str(exc)))
        with self._status.lock:
            self._status.vacuum_running = False
            self._status.vacuums[outcome.result] += 1
            self._status.vacuum_seconds_total += outcome.seconds
            if outcome.result == "done":
                self._status.vacuum_bytes_returned += max(
                    0, outcome.bytes_before - outcome.bytes_after
                )
        fields = outcome.fields()
        if outcome.result == "failed":
            log.error("log vacuum", rows_removed=removed, **fields)
        else:
            log.info("log vacuum", rows_removed=removed, **fields)

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel a running VACUUM and wait for its thread (at most `timeout`)."""
        thread = self._thread
        if thread is None:
            return
        self._cancel.set()
        thread.join(timeout)
        self._thread = None if not thread.is_alive() else thread
