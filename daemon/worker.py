"""The loop: work until idle, then wait for a NOTIFY, the poll interval or a stop.

Polling makes it correct; NOTIFY (channel `simtrail`, sent when the config
changes through simtrail) only makes it quicker. Every instance runs the
loop; only the one holding the lease does the work, the others stand by.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import replace

import psycopg

from simtrail import logs
from simtrail.daemon import sdnotify
from simtrail.daemon.cycle import Clocks, CycleReport, LeaderWork
from simtrail.daemon.health import HealthServer, Status
from simtrail.daemon.lease import Lease
from simtrail.daemon.queries import q
from simtrail.daemon.settings import DaemonSettings, load
from simtrail.daemon.signals import Flags, handled
from simtrail.daemon.upkeep import Upkeep
from simtrail.db import Conn, connect
from simtrail.errors import ConfigError, SimtrailError
from simtrail.logs import get
from simtrail.settings import first_line

log = get("simtrail.daemon")

# Waits are cut into slices this long so a stop is noticed quickly even when
# the wait itself cannot be interrupted.
WAIT_SLICE = 0.25
WORK_STATEMENT_TIMEOUT_MS = 600_000


class Worker:
    def __init__(
        self,
        settings: DaemonSettings,
        *,
        reload: Callable[[], DaemonSettings] | None = None,
        flags: Flags | None = None,
    ) -> None:
        if settings.dsn is None:
            raise ConfigError(
                "no database given: use --dsn, SIMTRAIL_DSN, DATABASE_URL, the PG* variables"
                " or `dsn` in the config file"
            )
        self.settings = settings
        # Fixed for the life of the process: a reload keeps the DSN in force.
        self._dsn: str = settings.dsn
        self._reload = reload
        self.flags = flags or Flags()
        self.status = Status(stale_after=settings.health_stale_after)
        self.clocks = Clocks()
        self.lease = Lease(self._dsn, ttl=settings.lease_ttl, retry=settings.lease_retry)
        self.upkeep = Upkeep(self._dsn, self.status)
        self._work: Conn | None = None
        self._listen: Conn | None = None
        self._health: HealthServer | None = None
        self._heal_now = True

    # -- connections -----------------------------------------------------
    def _work_conn(self) -> Conn:
        if self._work is None or self._work.closed:
            self._work = connect(
                self._dsn, "daemon", statement_timeout_ms=WORK_STATEMENT_TIMEOUT_MS
            )
        return self._work

    def _listen_conn(self) -> Conn | None:
        """The LISTEN session; None while it cannot be had (polling still works)."""
        if self._listen is None or self._listen.closed:
            try:
                self._listen = connect(self._dsn, "listen")
                self._listen.execute(q("listen"))
            except (SimtrailError, psycopg.Error):
                self._listen = None
        return self._listen

    def _close(self) -> None:
        for conn in (self._work, self._listen):
            if conn is not None:
                conn.close()
        self._work = self._listen = None
        self.lease.release()

    # -- the loop --------------------------------------------------------
    def run(self, *, once: bool = False) -> int:
        with handled(self.flags):
            if self.settings.health_port is not None:
                self._health = HealthServer(
                    self.settings.health_host, self.settings.health_port, self.status
                )
                self._health.start()
                log.info("health endpoint listening", host=self.settings.health_host,
                         port=self._health.port)
            log.info("daemon starting", pid=os.getpid(), **self.settings.public())
            ready = False
            exit_code = 0
            try:
                while not self.flags.stop.is_set():
                    report, failed = self._cycle()
                    if not ready and not failed:
                        sdnotify.notify(ready="1", status=f"{report.role}")
                        ready = True
                    sdnotify.notify(
                        watchdog="1", status=f"{report.role}, {self.status.cycles} cycles"
                    )
                    if once:
                        # A cron-style run waits for the VACUUM it started.
                        while self.upkeep.running and not self.flags.stop.is_set():
                            self.flags.stop.wait(WAIT_SLICE)
                        # A refused config row is a problem the caller must see.
                        exit_code = 1 if failed or report.refused else 0
                        break
                    if self._health is not None and not self._health.alive():
                        log.error("health endpoint died; stopping")
                        exit_code = 1
                        break
                    if self.flags.reload.is_set():
                        self._apply_reload()
                    if report.role == "leader" and not report.caught_up:
                        continue
                    self._wait(report.role)
            finally:
                sdnotify.notify(stopping="1")
                # A VACUUM can run for minutes: cancelled, so a stop stays quick.
                self.upkeep.stop()
                self._close()
                if self._health is not None:
                    self._health.stop()
                log.info("daemon stopped", signal=self.flags.signal_name, exit_code=exit_code)
            return exit_code

    def _cycle(self) -> tuple[CycleReport, bool]:
        started = time.monotonic()
        was_leader = self.lease.held
        try:
            role = "leader" if self.lease.acquire() else "standby"
        except SimtrailError as exc:
            log.error("cycle failed", role="standby", error=first_line(str(exc)))
            self.status.cycle_done("standby", time.monotonic() - started, failed=True)
            return CycleReport(role="standby"), True
        if role == "leader" and not was_leader:
            log.info("became leader")
            self._heal_now = True
            self.clocks = Clocks()
        elif was_leader and role != "leader":
            log.warning("lost leadership; standing by")
            self.upkeep.stop()
        report = CycleReport(role=role)
        failed = False
        try:
            if role == "leader":
                heal_now, self._heal_now = self._heal_now, False
                report = LeaderWork(self._work_conn(), self.status, self.clocks).run(
                    self.settings, self.flags.stop, heal_now=heal_now
                )
        except (psycopg.Error, SimtrailError) as exc:
            failed = True
            log.error("cycle failed", role=role, error=first_line(str(exc)))
            if self._work is not None and (self._work.closed or self._work.broken):
                self._work = None
        except Exception:
            # The loop goes on: one bad cycle must not end the service.
            failed = True
            log.exception("cycle failed unexpectedly", role=role)
            if self._work is not None:
                self._work.close()
                self._work = None
        if role == "leader" and not failed:
            retention = report.retention or {}
            self.upkeep.removed(report.archived + int(retention.get("log_rows_deleted") or 0))
            report.vacuum_started = self.upkeep.maybe_start(self.settings.vacuum_interval)
        seconds = time.monotonic() - started
        self.status.cycle_done(role, seconds, failed=failed)
        if not failed:
            log.info("cycle", seconds=round(seconds, 3), **report.fields())
        return report, failed

    def _wait(self, role: str) -> None:
        """Until a NOTIFY, the next tick or poll, or a stop, whichever is first."""
        timeout = self.settings.poll_interval
        if role == "leader":
            timeout = min(timeout, self.clocks.seconds_to_next_tick(self.settings.tick_interval))
        deadline = time.monotonic() + timeout
        while not self.flags.stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            listen = self._listen_conn()
            if listen is None:
                self.flags.stop.wait(min(WAIT_SLICE, remaining))
                continue
            try:
                for notice in listen.notifies(timeout=min(WAIT_SLICE, remaining), stop_after=1):
                    log.debug("notified", payload=notice.payload)
                    self._heal_now = True
                    return
            except psycopg.Error:
                listen.close()
                self._listen = None

    def _apply_reload(self) -> None:
        self.flags.reload.clear()
        if self._reload is None:
            return
        try:
            fresh = self._reload()
        except SimtrailError as exc:
            log.error("reload failed; keeping the settings in force", error=str(exc))
            return
        if fresh.dsn != self.settings.dsn or fresh.health_port != self.settings.health_port or (
            fresh.health_host != self.settings.health_host
        ):
            log.warning("dsn and health endpoint changes take effect at the next restart")
            fresh = replace(fresh, dsn=self.settings.dsn, health_port=self.settings.health_port,
                            health_host=self.settings.health_host)
        self.settings = fresh
        self.status.stale_after = fresh.health_stale_after
        self._heal_now = True
        log.info("settings reloaded", **fresh.public())


def run_daemon(flags: Mapping[str, object], *, once: bool) -> int:
    """Entry point for `simtrail daemon`: load settings, run until stopped."""
    settings = load(flags)
    logs.configure(settings.log_level)
    worker = Worker(settings, reload=lambda: load(flags))
    return worker.run(once=once)
