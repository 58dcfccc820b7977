"""systemd's notify protocol (Type=notify, WatchdogSec), without a dependency.

Outside systemd NOTIFY_SOCKET is unset and every call does nothing.
"""

from __future__ import annotations

import os
import socket


def notify(**fields: str) -> bool:
    """Send READY=1, WATCHDOG=1, STATUS=..., STOPPING=1 and the like."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket
    message = "\n".join(f"{key.upper()}={value}" for key, value in fields.items())
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError:
        return False
    return True
