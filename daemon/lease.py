"""Leadership: a PostgreSQL advisory lock held on a connection of its own.

The lock lives as long as that connection. A leader killed outright (kill -9)
closes its socket, the server ends the session and the lock is free for the
next standby that asks. A leader cut off from the server notices when its
check fails within lease_retry; TCP keepalives bound how long the server keeps
a silent session (and so the lock) to about lease_ttl.
"""

from __future__ import annotations

import psycopg

from simtrail.daemon.queries import q
from simtrail.db import Conn, connect
from simtrail.logs import get

log = get("simtrail.daemon")


class Lease:
    def __init__(self, dsn: str, *, ttl: float, retry: float) -> None:
        self._dsn = dsn
        self._ttl = ttl
        self._retry = retry
        self._conn: Conn | None = None
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
        """Try once to become (or stay) leader; never waits for the lock."""
        try:
            if self.held:
                # The lock is ours as long as the session that took it lives.
                self._connection().execute(q("lease_alive"))
                return True
            row = self._connection().execute(q("try_lease")).fetchone()
            self.held = bool(row and row["held"])
        except (psycopg.Error, OSError) as exc:
            if self.held:
                log.warning("lease lost", error=str(exc).strip().splitlines()[0])
            self.drop()
        return self.held

    def drop(self) -> None:
        """Give the lease up by closing its session."""
        self.held = False
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
