"""What the numbers were measured on: host, PostgreSQL server and software."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from bench.sql import query

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Machine:
    cpu_model: str
    cores: int
    memory: str
    os: str
    python: str
    psycopg: str
    date: str
    commit: str
    server: str
    postgres: str = ""
    settings: dict[str, str] = field(default_factory=dict)
    load_before: str = ""
    load_after: str = ""


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                kib = int(line.split()[1])
                return f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return f"{total / 1024**3:.1f} GiB"
    except (ValueError, OSError, AttributeError):
        return "unknown"


def load() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def _commit() -> str:
    """The commit measured, flagged when the capture code has local edits."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "triggers", "core"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head} (with uncommitted changes in triggers/ or core/)" if dirty else head


def collect(server: str) -> Machine:
    return Machine(
        cpu_model=_cpu_model(),
        cores=os.cpu_count() or 0,
        memory=_memory(),
        os=platform.platform(),
        python=platform.python_version(),
        psycopg=psycopg.__version__,
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        commit=_commit(),
        server=server,
        load_before=load(),
    )


def add_server_facts(machine: Machine, conn: psycopg.Connection[dict[str, object]]) -> None:
    row = conn.execute(query("server.sql", "server_facts")).fetchone()
    if row is None:
        return
    facts = {key: str(value) for key, value in row.items()}
    machine.postgres = facts.pop("server_version")
    facts.pop("version")
    machine.settings = facts


def section(machine: Machine, *extra: str) -> list[str]:
    """The *Machine* part of a benchmark's section; `extra` lines go before the load."""
    settings = ", ".join(f"{k} = {v}" for k, v in machine.settings.items())
    return [
        "### Machine",
        "",
        f"- Date: {machine.date}",
        f"- CPU: {machine.cpu_model}, {machine.cores} cores; memory {machine.memory}",
        f"- OS: {machine.os}",
        f"- PostgreSQL: {machine.postgres} ({machine.server})",
        f"- Server settings: {settings}",
        f"- Python: {machine.python}, psycopg {machine.psycopg}",
        f"- simtrail commit: {machine.commit}",
        *extra,
        f"- Load average (1/5/15 min) before and after: {machine.load_before}; "
        f"{machine.load_after}. The machine is shared; other work may have run alongside.",
        "",
    ]
