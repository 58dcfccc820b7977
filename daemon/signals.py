"""Signal handling: handlers only set flags; the loop acts on them."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType


@dataclass
class Flags:
    stop: threading.Event = field(default_factory=threading.Event)
    reload: threading.Event = field(default_factory=threading.Event)
    signal_name: str | None = None


@contextmanager
def handled(flags: Flags) -> Iterator[Flags]:
    """Install SIGTERM/SIGINT (stop) and SIGHUP (reload); restore the old ones after."""

    def on_stop(signum: int, _frame: FrameType | None) -> None:
        flags.signal_name = signal.Signals(signum).name
        flags.stop.set()

    def on_reload(_signum: int, _frame: FrameType | None) -> None:
        flags.reload.set()

    wanted = {signal.SIGTERM: on_stop, signal.SIGINT: on_stop, signal.SIGHUP: on_reload}
    previous = {signum: signal.signal(signum, handler) for signum, handler in wanted.items()}
    try:
        yield flags
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
