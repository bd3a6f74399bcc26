"""systemd's notify protocol: one datagram per message to ``$NOTIFY_SOCKET``.

A few lines of stdlib instead of a dependency. Outside systemd (no
``NOTIFY_SOCKET``) every call is a no-op, so the daemon runs the same in a
shell, a test or a unit.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

log = logging.getLogger(__name__)


class Notifier:
    """Sends READY=1, WATCHDOG=1 and STATUS=... to the service manager."""

    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]  # abstract namespace socket
        self._address = address
        self._warned = False

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def send(self, *lines: str) -> None:
        """Best effort: a vanished manager socket must never break a state transition."""
        if not self._address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(lines).encode(), self._address)
        except OSError as exc:
            if not self._warned:
                log.warning("sd_notify to %s failed: %s", self._address, exc)
                self._warned = True

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    async def keep_alive(self) -> None:
        """Pet systemd's watchdog at half its interval, forever (returns at once without one)."""
        interval = watchdog_interval()
        if interval is None:
            return
        while True:
            self.watchdog()
            await asyncio.sleep(interval)


def watchdog_interval() -> float | None:
    """Half of systemd's ``WatchdogSec`` (``$WATCHDOG_USEC``), or None when unset."""
    raw = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not raw or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(raw) / 2_000_000
    except ValueError:
        return None
