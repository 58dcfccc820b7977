"""Leadership: an expiring lease in simtrail.daemon_lease (Patroni-style).

The leader renews the lease's expiry every loop, each time in a short
transaction of its own; nothing stays open between renewals, so the lease
holds back no vacuum and no app role can take or hold it (the table is in
schema simtrail). A standby takes over once the lease has expired, or at once
when the session that last renewed it is gone: a leader killed outright
(kill -9) closes its socket and the server ends that session. A leader that
cannot renew within lease_retry stops working as leader; settings.check
makes sure that happens before the lease would expire.
"""

from __future__ import annotations

import os
import secrets
import socket

import psycopg

from simtrail.daemon.queries import q
from simtrail.db import Conn, connect
from simtrail.errors import NotInstalledError
from simtrail.logs import get

log = get("simtrail.daemon")


class Lease:
    def __init__(self, dsn: str, *, ttl: float, retry: float) -> None:
        self._dsn = dsn
        self._ttl = ttl
        self._retry = retry
        self._conn: Conn | None = None
        # Unique per process, even for containers sharing a hostname and pid 1.
        self.holder = f"{socket.gethostname()} pid {os.getpid()} {secrets.token_hex(4)}"
        self.held = False

    def _connection(self) -> Conn:
        if self._conn is None or self._conn.closed:
            idle = max(1, int(self._ttl / 3))
            self._conn = connect(
                self._dsn,
                "lease",
                statement_timeout_ms=int(self._retry * 1000),
                keepalives=1,
                keepalives_idle=idle,
                keepalives_interval=max(1, int(self._retry)),
                keepalives_count=2,
                tcp_user_timeout=int(self._ttl * 1000),
            )
        return self._conn

    def acquire(self) -> bool:
        """Renew the lease, or take it if it is free; never waits for it."""
        try:
            row = self._connection().execute(
                q("try_lease"), {"holder": self.holder, "ttl": self._ttl}
            ).fetchone()
            held = bool(row and row["held"])
        except psycopg.errors.UndefinedTable:
            self.drop()
            raise NotInstalledError(
                "simtrail (schema version 5 or later) is not installed in this database;"
                " run `simtrail install`"
            ) from None
        except (psycopg.Error, OSError) as exc:
            if self.held:
                log.warning("lease lost", error=str(exc).strip().splitlines()[0])
            self.drop()
            return False
        if self.held and not held:
            log.warning("lease lost", error="another daemon holds it")
        self.held = held
        return held

    def release(self) -> None:
        """Give the lease up on the way out, so a standby need not wait for it to expire."""
        if self.held and self._conn is not None and not self._conn.closed:
            try:
                self._conn.execute(q("release_lease"), {"holder": self.holder})
            except (psycopg.Error, OSError) as exc:
                log.warning("could not release the lease", error=str(exc).strip().splitlines()[0])
        self.drop()

    def drop(self) -> None:
        """Stop counting as leader and close the lease's session."""
        self.held = False
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
