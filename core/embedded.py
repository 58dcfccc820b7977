"""An embedded PostgreSQL (pgserver) for the demo and the tests, when no server is given."""

from __future__ import annotations

import warnings
from contextlib import ExitStack
from pathlib import Path


def start(datadir: Path, stack: ExitStack, *, keep_running: bool = False) -> str:
    """Start (or reuse) the server in `datadir` and return its DSN.

    The server stops when `stack` closes, unless keep_running is set.
    """
    datadir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # platformdirs complains about XDG_RUNTIME_DIR on servers; harmless here.
        warnings.simplefilter("ignore")
        import pgserver

        get_server = pgserver.get_server  # type: ignore[attr-defined]
        server = get_server(datadir, cleanup_mode=None if keep_running else "stop")
    if not keep_running:
        stack.callback(server.cleanup)
    uri: str = server.get_uri()
    return uri
