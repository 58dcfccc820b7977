"""One cycle of the leader's work: tick, heal triggers, seal, thin, compact, retain.

Each step is due on its own clock; a cycle does the steps that are due and
says what it did. Compaction runs batch after batch, one transaction each,
until it catches up, the stop flag is set or the cycle's time budget is spent
(the loop then comes straight back, so ticks keep their rhythm).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from simtrail.daemon.health import Status
from simtrail.daemon.queries import q
from simtrail.daemon.settings import DaemonSettings
from simtrail.db import Conn
from simtrail.errors import NotInstalledError
from simtrail.logs import get
from simtrail.settings import first_line
from simtrail.signing import Signer, load_signer
from simtrail.triggers import sealing
from simtrail.triggers.installer import refusal_line, split_refused

log = get("simtrail.daemon")

RETENTION_EVERY = 60.0
STATS_EVERY = 10.0


def tick_promise(tick_interval: float) -> float:
    """How soon after a tick the daemon promises the next one, in seconds.

    The interval, plus room for the cycle's other work between two ticks (a
    heal, one compaction batch), so that a daemon that runs does not get its
    time targets refused for being a little late. A gap longer than this is an
    outage: a time inside it is refused unless asked for the nearest cut.
    """
    return tick_interval + max(1.0, tick_interval)


@dataclass
class CycleReport:
    """What one cycle did: the fields of its log line."""

    role: str
    ticks: int = 0
    ticks_thinned: int = 0
    healed: list[dict[str, str]] = field(default_factory=list)
    # Config rows the heal left out, each with its problem (None: no heal ran).
    refused: list[dict[str, str]] | None = None
    batches: int = 0
    scanned: int = 0
    archived: int = 0
    net: int = 0
    caught_up: bool = True
    retention: dict[str, Any] | None = None
    vacuum_started: bool = False
    sealed: int = 0

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "ticks": self.ticks}
        if self.role != "leader":
            return out
        out.update(
            ticks_thinned=self.ticks_thinned,
            sealed=self.sealed,
            healed=len(self.healed),
            config_problems=len(self.refused or []),
            compaction_batches=self.batches,
            compaction_scanned=self.scanned,
            compaction_archived=self.archived,
            compaction_net=self.net,
            compaction_caught_up=self.caught_up,
            vacuum_started=self.vacuum_started,
        )
        if self.retention is not None:
            out["retention_dropped"] = self.retention.get("dropped_partitions", [])
        return out


@dataclass
class Clocks:
    """When each step last ran (monotonic seconds); 0 means never."""

    tick: float = 0.0
    heal: float = 0.0
    retention: float = 0.0
    stats: float = 0.0
    fingerprint: str = ""
    # The refused config rows last logged, so a bad row is logged when it
    # appears (or changes), not at every heal.
    refused: list[dict[str, str]] = field(default_factory=list)

    def due(self, name: str, every: float, now: float) -> bool:
        last: float = getattr(self, name)
        return last == 0.0 or now - last >= every

    def seconds_to_next_tick(self, every: float) -> float:
        return max(0.0, self.tick + every - time.monotonic())


class LeaderWork:
    def __init__(self, conn: Conn, status: Status, clocks: Clocks) -> None:
        self.conn = conn
        self.status = status
        self.clocks = clocks
        self._signer: tuple[str, Signer] | None = None

    def signer(self, settings: DaemonSettings) -> Signer | None:
        """The signing key, read again only when the setting names another file."""
        if settings.sign_key is None:
            return None
        if self._signer is None or self._signer[0] != settings.sign_key:
            self._signer = (settings.sign_key, load_signer(Path(settings.sign_key)))
        return self._signer[1]

    def seal(self, settings: DaemonSettings, report: CycleReport) -> None:
        """Seal before compacting: compaction folds only sealed changes."""
        result = sealing.seal(self.conn, batch=settings.batch_size, signer=self.signer(settings))
        report.sealed = int(result["sealed"])
        with self.status.lock:
            self.status.sealed_rows += report.sealed

    def check_installed(self) -> None:
        row = self.conn.execute(q("installed")).fetchone()
        if not row or not row["installed"]:
            raise NotInstalledError(
                "simtrail (schema version 3 or later) is not installed in this database;"
                " run `simtrail install`"
            )

    def tick_if_due(self, settings: DaemonSettings, report: CycleReport) -> None:
        now = time.monotonic()
        if self.clocks.due("tick", settings.tick_interval, now):
            self.conn.execute(q("tick"), {"promise": tick_promise(settings.tick_interval)})
            self.clocks.tick = now
            report.ticks += 1
            with self.status.lock:
                self.status.ticks += 1

    def heal(self, settings: DaemonSettings, report: CycleReport, *, now_please: bool) -> None:
        now = time.monotonic()
        row = self.conn.execute(q("heal_fingerprint")).fetchone()
        fingerprint = str(row["fingerprint"]) if row else ""
        changed = fingerprint != self.clocks.fingerprint
        if not (now_please or changed or self.clocks.due("heal", settings.heal_interval, now)):
            return
        self.clocks.heal = now
        self.clocks.fingerprint = fingerprint
        try:
            with self.conn.transaction():
                rows = [dict(r) for r in self.conn.execute(q("sync"))]
        except psycopg.errors.InvalidParameterValue as exc:
            log.error("config has a problem; triggers left as they are",
                      error=first_line(str(exc)))
            return
        actions, refused = split_refused(rows)
        # Sync heals every valid table and leaves only the bad rows' tables
        # alone; each of those is an error until someone fixes the row.
        if refused != self.clocks.refused:
            for row in refused:
                log.error("config row refused; its triggers are left as they are",
                          table=row["table_name"], problem=row["problem"],
                          error=refusal_line(row))
            if not refused:
                log.info("config problems resolved")
            self.clocks.refused = refused
        report.refused = refused
        with self.status.lock:
            self.status.config_problems = refused
        for action in actions:
            log.info("trigger healed", action=action["action"], table=action["table_name"],
                     detail=action["detail"])
            with self.status.lock:
                self.status.healed[action["action"]] += 1
        report.healed = actions
        # Read again: healing changes the triggers it fingerprints.
        row = self.conn.execute(q("heal_fingerprint")).fetchone()
        self.clocks.fingerprint = str(row["fingerprint"]) if row else ""

    def compact(
        self, settings: DaemonSettings, report: CycleReport, stop: threading.Event
    ) -> None:
        with self.conn.transaction():
            row = self.conn.execute(
                q("thin_ticks"),
                {"window": settings.fine_window, "keep_every": settings.coarse_tick_interval},
            ).fetchone()
        report.ticks_thinned = int(row["deleted"]) if row else 0
        budget_ends = time.monotonic() + max(settings.tick_interval, 1.0)
        while not stop.is_set():
            with self.conn.transaction():
                row = self.conn.execute(
                    q("compact_batch"),
                    {"window": settings.fine_window, "batch": settings.batch_size},
                ).fetchone()
            batch: dict[str, Any] = row["batch"] if row else {"done": True}
            report.batches += 1
            report.scanned += int(batch.get("scanned", 0))
            report.archived += int(batch.get("archived", 0))
            report.net += int(batch.get("net", 0))
            with self.status.lock:
                self.status.compacted_rows += int(batch.get("scanned", 0))
                self.status.archived_rows += int(batch.get("archived", 0))
            report.caught_up = bool(batch.get("done", True))
            if report.caught_up or time.monotonic() >= budget_ends:
                break
            # A long backlog must not starve the ticks that time targets need.
            self.tick_if_due(settings, report)

    def retain(self, settings: DaemonSettings, report: CycleReport) -> None:
        now = time.monotonic()
        if settings.retention_days <= 0 or not self.clocks.due("retention", RETENTION_EVERY, now):
            return
        self.clocks.retention = now
        with self.conn.transaction():
            row = self.conn.execute(
                q("apply_retention"), {"days": settings.retention_days}
            ).fetchone()
            report.retention = row["retention"] if row else None
            prune = (report.retention or {}).get("prune") or {}
            signer = self.signer(settings)
            if signer is not None and prune.get("record_id") is not None:
                sealing.sign_record(self.conn, int(prune["record_id"]), signer)
        if report.retention and report.retention.get("dropped_partitions"):
            log.info("retention dropped archive partitions",
                     partitions=report.retention["dropped_partitions"],
                     horizon=report.retention.get("horizon"))

    def refresh_stats(self, settings: DaemonSettings, *, force: bool = False) -> None:
        now = time.monotonic()
        if not (force or self.clocks.due("stats", STATS_EVERY, now)):
            return
        self.clocks.stats = now
        row = self.conn.execute(q("stats"), {"window": settings.fine_window}).fetchone()
        stats: dict[str, Any] = row["stats"] if row else {}
        with self.status.lock:
            self.status.db = stats
            self.status.rewinds = int(stats.get("rewinds", 0))

    def run(
        self,
        settings: DaemonSettings,
        stop: threading.Event,
        *,
        heal_now: bool,
    ) -> CycleReport:
        report = CycleReport(role="leader")
        self.check_installed()
        self.tick_if_due(settings, report)
        self.heal(settings, report, now_please=heal_now)
        self.seal(settings, report)
        self.compact(settings, report, stop)
        self.retain(settings, report)
        self.refresh_stats(settings, force=report.batches > 1 or report.retention is not None)
        return report
