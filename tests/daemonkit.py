"""Run the real `simtrail daemon` in a subprocess and watch it from outside."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PG", "DATABASE_URL", "SIMTRAIL_", "NOTIFY_SOCKET"))
    }
    env.update(extra or {})
    return env


@dataclass
class Daemon:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=3) as r:
                return int(r.status), r.read().decode()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode()

    def health(self) -> tuple[int, dict[str, Any]]:
        code, body = self.get("/healthz")
        parsed: dict[str, Any] = json.loads(body)
        return code, parsed

    def role(self) -> str | None:
        try:
            return str(self.health()[1]["role"])
        except (OSError, ValueError):
            return None

    def metrics(self) -> dict[str, float]:
        """Samples of /metrics by name (labels included), as numbers."""
        code, body = self.get("/metrics")
        assert code == 200
        samples: dict[str, float] = {}
        for line in body.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                samples[name] = float(value)
        return samples

    def logs(self) -> list[dict[str, Any]]:
        """The JSON lines written so far (the daemon logs JSON off a TTY)."""
        lines = []
        for line in self.log_path.read_text().splitlines():
            if line.startswith("{"):
                lines.append(json.loads(line))
        return lines

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.logs() if line.get("event") == name]

    def signal(self, signum: signal.Signals) -> None:
        os.kill(self.process.pid, signum)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)


def eventually(check: Callable[[], T | None], *, timeout: float, what: str) -> T:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.1)


@contextmanager
def running(
    dsn: str, tmp: Path, *args: str, env: dict[str, str] | None = None, name: str = "daemon"
) -> Iterator[Daemon]:
    """A daemon with a health port; stopped (SIGKILL if need be) on the way out."""
    port = free_port()
    log_path = tmp / f"{name}-{port}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "simtrail.cli.main", "--dsn", dsn, "daemon",
             "--health-port", str(port), *args],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=clean_env(env),
        )
    daemon = Daemon(process, port, log_path)
    try:
        eventually(daemon.role, timeout=30, what=f"{name} answers on /healthz")
        yield daemon
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
