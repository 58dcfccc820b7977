"""CPU time spent by server backends, where the server runs on this host.

Wall-clock time on a shared machine also counts the time a backend waited for
a CPU that someone else held. Linux's /proc/<pid>/schedstat gives the time it
actually ran, in nanoseconds, which barely moves with background load. It is
only trusted when /proc/<pid> is visibly the backend of our own connection
(its title names our scratch database); on a remote server it is skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg


def _schedstat(conn: psycopg.Connection[Any]) -> Path | None:
    proc = Path("/proc") / str(conn.info.backend_pid)
    try:
        title = (proc / "cmdline").read_bytes()
        int((proc / "schedstat").read_text(encoding="ascii").split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if not title.startswith(b"postgres") or conn.info.dbname.encode() not in title:
        return None
    return proc / "schedstat"


class CpuMeter:
    """Summed on-CPU nanoseconds of the backends behind some connections."""

    def __init__(self, conns: Sequence[psycopg.Connection[Any]]) -> None:
        paths = [_schedstat(conn) for conn in conns]
        self.paths = [p for p in paths if p is not None] if all(paths) else []

    @property
    def available(self) -> bool:
        return bool(self.paths)

    def read(self) -> int:
        return self.read_both()[0]

    def read_both(self) -> tuple[int, int]:
        """Summed nanoseconds on a CPU, and waiting on a run queue for one."""
        if not self.paths:
            return 0, 0
        fields = [p.read_text(encoding="ascii").split() for p in self.paths]
        return sum(int(f[0]) for f in fields), sum(int(f[1]) for f in fields)
