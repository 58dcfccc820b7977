"""/healthz and /metrics over HTTP, served from the worker's in-memory status.

The HTTP thread never touches the database: a scrape costs nothing, and a
stuck database shows up as a stale last cycle instead of a hung request.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# Figures from simtrail.daemon_stats(): metric name, stats key, help text.
DB_GAUGES = (
    ("simtrail_log_rows", "log_rows", "Rows in simtrail.changes (the log)."),
    ("simtrail_log_net_rows", "net_rows", "Net changes compaction left in the log."),
    ("simtrail_log_bytes", "log_bytes", "Size of the log with its indexes."),
    ("simtrail_archive_rows", "archive_rows", "Original changes in the archive."),
    ("simtrail_archive_bytes", "archive_bytes", "Size of the archive partitions."),
    ("simtrail_archive_partitions", "archive_partitions", "Daily archive partitions."),
    ("simtrail_ticks", "ticks", "Ticks kept for time targets."),
    ("simtrail_compaction_lag_seconds", "compaction_lag_seconds",
     "Age beyond the fine window of the oldest change compaction has not reached."),
)


@dataclass
class Status:
    """What the worker did, read by the HTTP thread. Guarded by `lock`."""

    stale_after: float
    role: str = "starting"
    started: float = field(default_factory=time.monotonic)
    last_cycle: float | None = None
    last_cycle_seconds: float = 0.0
    cycles: int = 0
    cycle_errors: int = 0
    cycle_seconds_total: float = 0.0
    ticks: int = 0
    compacted_rows: int = 0
    sealed_rows: int = 0
    archived_rows: int = 0
    healed: Counter[str] = field(default_factory=Counter)
    rewinds: int | None = None
    # Config rows the last heal refused: the daemon runs, but those tables
    # are not healed (and maybe not captured) until the rows are fixed.
    config_problems: list[dict[str, str]] = field(default_factory=list)
    db: dict[str, Any] = field(default_factory=dict)
    # The daemon's own VACUUM of the log (daemon/upkeep.py).
    vacuum_running: bool = False
    vacuums: Counter[str] = field(default_factory=Counter)
    vacuum_seconds_total: float = 0.0
    vacuum_bytes_returned: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def cycle_done(self, role: str, seconds: float, *, failed: bool = False) -> None:
        with self.lock:
            self.role = role
            self.last_cycle = time.monotonic()
            self.last_cycle_seconds = seconds
            self.cycles += 1
            self.cycle_seconds_total += seconds
            if failed:
                self.cycle_errors += 1

    def health(self) -> tuple[int, dict[str, Any]]:
        with self.lock:
            now = time.monotonic()
            age = None if self.last_cycle is None else now - self.last_cycle
            # Before its first cycle a daemon gets the stale allowance to start.
            fresh = (age if age is not None else now - self.started) <= self.stale_after
            # A config problem is reported but keeps 200: restarting the
            # daemon would not fix a config row, and the rest is healed.
            body = {
                "status": "stale" if not fresh else "degraded" if self.config_problems else "ok",
                "role": self.role,
                "last_cycle_age_seconds": None if age is None else round(age, 3),
                "stale_after_seconds": self.stale_after,
                "cycles": self.cycles,
                "config_problems": list(self.config_problems),
            }
        return (200 if fresh else 503), body

    def metrics(self) -> str:
        with self.lock:
            now = time.monotonic()
            age = now - (self.last_cycle if self.last_cycle is not None else self.started)
            lines: list[str] = []

            def metric(name: str, kind: str, text: str, samples: list[tuple[str, float]]) -> None:
                lines.append(f"# HELP {name} {text}")
                lines.append(f"# TYPE {name} {kind}")
                lines.extend(f"{name}{labels} {value:g}" for labels, value in samples)

            metric("simtrail_leader", "gauge", "1 while this process holds the leader lease.",
                   [("", 1.0 if self.role == "leader" else 0.0)])
            metric("simtrail_last_cycle_age_seconds", "gauge", "Seconds since the last cycle.",
                   [("", age)])
            metric("simtrail_cycle_duration_seconds", "summary", "Time spent in cycles.",
                   [("_sum", self.cycle_seconds_total), ("_count", float(self.cycles))])
            metric("simtrail_last_cycle_duration_seconds", "gauge", "The last cycle's duration.",
                   [("", self.last_cycle_seconds)])
            metric("simtrail_cycle_errors_total", "counter", "Cycles that failed.",
                   [("", float(self.cycle_errors))])
            metric("simtrail_config_problems", "gauge",
                   "Config rows the last heal refused (their tables are left as they are).",
                   [("", float(len(self.config_problems)))])
            metric("simtrail_ticks_recorded_total", "counter", "Ticks this process recorded.",
                   [("", float(self.ticks))])
            metric("simtrail_compacted_rows_total", "counter",
                   "Log rows this process put through compaction.",
                   [("", float(self.compacted_rows))])
            metric("simtrail_sealed_rows_total", "counter",
                   "Original changes this process sealed into their tenants' chains.",
                   [("", float(self.sealed_rows))])
            metric("simtrail_archived_rows_total", "counter",
                   "Original changes this process moved to the archive.",
                   [("", float(self.archived_rows))])
            metric("simtrail_triggers_healed_total", "counter",
                   "Capture triggers this process attached, refreshed or detached.",
                   [(f'{{action="{action}"}}', float(self.healed[action]))
                    for action in ("attach", "refresh", "detach")])
            metric("simtrail_vacuums_total", "counter",
                   "VACUUMs of the log this process ran, by how they ended.",
                   [(f'{{result="{result}"}}', float(self.vacuums[result]))
                    for result in ("done", "cancelled", "failed")])
            metric("simtrail_vacuum_seconds_total", "counter",
                   "Time this process spent in VACUUMs of the log.",
                   [("", self.vacuum_seconds_total)])
            metric("simtrail_vacuum_running", "gauge", "1 while a VACUUM of the log runs.",
                   [("", 1.0 if self.vacuum_running else 0.0)])
            metric("simtrail_vacuum_returned_bytes_total", "counter",
                   "Bytes by which this process's VACUUMs shrank the log.",
                   [("", float(self.vacuum_bytes_returned))])
            if self.rewinds is not None:
                metric("simtrail_rewinds_total", "counter", "Rewinds applied in this database.",
                       [("", float(self.rewinds))])
            for name, key, text in DB_GAUGES:
                if self.db.get(key) is not None:
                    metric(name, "gauge", text, [("", float(self.db[key]))])
        return "\n".join(lines) + "\n"


class _Handler(BaseHTTPRequestHandler):
    status: Status  # set on the subclass made per server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            code, body = self.status.health()
            self._send(code, "application/json", json.dumps(body) + "\n")
        elif path == "/metrics":
            self._send(200, "text/plain; version=0.0.4; charset=utf-8", self.status.metrics())
        else:
            self._send(404, "text/plain; charset=utf-8", "not found: try /healthz or /metrics\n")

    def _send(self, code: int, content_type: str, text: str) -> None:
        data = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        # Scrapes every few seconds would drown the one-line-per-cycle log.
        return


class HealthServer:
    """A ThreadingHTTPServer on its own daemon thread."""

    def __init__(self, host: str, port: int, status: Status) -> None:
        handler = type("Handler", (_Handler,), {"status": status})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="simtrail-health", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
