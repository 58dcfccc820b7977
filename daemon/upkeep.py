"""The daemon's own upkeep: a plain VACUUM of the log after rows left it.

Compaction and retention delete rows from simtrail.changes; until a VACUUM
their space is neither reusable by new changes nor, at the end of the table,
given back. The daemon does not leave that to autovacuum (which may be off,
or far behind on a busy log): when rows have left the log and the interval
has passed, it runs VACUUM on a connection of its own, in a thread, so ticks
and lease renewals go on meanwhile. A stop (SIGTERM) or a lost lease cancels
it at once: VACUUM is safe to cancel and the next one starts over.

Plain VACUUM only: it takes SHARE UPDATE EXCLUSIVE, which no writer waits
for. Truncating empty pages at the table's end takes ACCESS EXCLUSIVE for a
moment, only when it can get it without waiting, and gives it up as soon as
another session queues for the table (as autovacuum does).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import psycopg

from simtrail.daemon.health import Status
from simtrail.daemon.queries import q
from simtrail.db import Conn, connect
from simtrail.logs import get
from simtrail.settings import first_line

log = get("simtrail.daemon")

# How long a cancel request may take to reach the server.
CANCEL_TIMEOUT = 3.0


@dataclass
class Outcome:
    """What one VACUUM did: the fields of its log line."""

    result: str  # done, cancelled or failed
    seconds: float
    bytes_before: int = 0
    bytes_after: int = 0
    error: str | None = None

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "result": self.result,
            "seconds": round(self.seconds, 3),
            "log_bytes_before": self.bytes_before,
            "log_bytes_after": self.bytes_after,
            "log_bytes_returned": max(0, self.bytes_before - self.bytes_after),
        }
        if self.error is not None:
            out["error"] = self.error
        return out


def log_bytes(conn: Conn) -> int:
    row = conn.execute(q("log_bytes")).fetchone()
    return int(row["bytes"]) if row else 0


def vacuum_log(conn: Conn, cancel: threading.Event | None = None) -> Outcome:
    """VACUUM the log and compaction's work tables on `conn` (autocommit).

    When `cancel` is set while it runs, the server is asked to cancel it and
    the outcome says "cancelled". The benchmark calls this too, so it
    measures what the daemon does.
    """
    started = time.monotonic()
    before = log_bytes(conn)
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
    except psycopg.errors.QueryCanceled as exc:
        result = "cancelled" if cancel is not None and cancel.is_set() else "failed"
        return Outcome(result, time.monotonic() - started, before, before,
                       error=first_line(str(exc)))
    finally:
        done.set()
        if cancel is not None:
            watcher.join()
    return Outcome("done", time.monotonic() - started, before, log_bytes(conn))


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
                outcome = vacuum_log(conn, cancel)
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

    def stop(self, timeout: float = 8.0) -> None:
        """Cancel a running VACUUM and wait for its thread (at most `timeout`)."""
        thread = self._thread
        if thread is None:
            return
        self._cancel.set()
        thread.join(timeout)
        self._thread = None if not thread.is_alive() else thread
