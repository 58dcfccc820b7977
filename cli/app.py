"""What every command receives: settings resolved once, connections on demand."""

from __future__ import annotations

from dataclasses import dataclass

from simtrail.db import Conn, connect
from simtrail.settings import resolve_dsn


@dataclass
class App:
    dsn_option: str | None = None
    statement_timeout_ms: int = 300_000

    @property
    def dsn(self) -> str | None:
        """The configured DSN, or None when nothing names a server."""
        return resolve_dsn(self.dsn_option)

    def connect(self, purpose: str, *, autocommit: bool = True) -> Conn:
        return connect(
            self.dsn or "",
            purpose,
            autocommit=autocommit,
            statement_timeout_ms=self.statement_timeout_ms,
        )
