"""What every command receives: settings resolved once, connections on demand."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import click

from simtrail.db import Conn, banner, connect, describe
from simtrail.settings import resolve_dsn


@dataclass
class App:
    dsn_option: str | None = None
    statement_timeout_ms: int = 300_000
    # --json anywhere on the command line: output and errors are JSON.
    as_json: bool = False
    # Set by @names_database: the command writes (or is `status`), so it says
    # which database it acts on, as psql does.
    announce: bool = False
    # What the last connection is connected to (see simtrail.db.describe).
    target: dict[str, Any] | None = None

    @property
    def dsn(self) -> str | None:
        """The configured DSN, or None when nothing names a server."""
        return resolve_dsn(self.dsn_option)

    def connect(self, purpose: str, *, autocommit: bool = True) -> Conn:
        conn = connect(
            self.dsn or "",
            purpose,
            autocommit=autocommit,
            statement_timeout_ms=self.statement_timeout_ms,
        )
        self.arrived(describe(conn))
        return conn

    def arrived(self, target: dict[str, Any]) -> None:
        """Remember the database; name it before any work is done on it.

        As psql does, the name is for a person at a terminal: the first line on
        stderr when stderr is one. Scripts see nothing extra (an error stays one
        line on stderr); with --json the payload's `connection` field says it.
        """
        first = self.target is None
        self.target = target
        if self.announce and first and not self.as_json and _stderr_is_a_terminal():
            click.echo(banner(target), err=True)


def _stderr_is_a_terminal() -> bool:
    return sys.stderr.isatty()
