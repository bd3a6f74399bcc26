"""A private D-Bus daemon for the virtual vehicle: the Master's ``org.redstone.Master1``.

A session-type bus on a Unix socket in the lab's work directory (a socket
path works across the lab's network namespaces), so ``redstonectl --bus
ADDRESS`` reaches the virtual TBox as an HMI reaches a real one over the
system bus. The permission rules of the real system bus are tested on their
own (tests/integration/dbus).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from redstone_agent.vvehicle.errors import LabError
from redstone_agent.vvehicle.netlab import Node, stop_process


def have_dbus_daemon() -> bool:
    return shutil.which("dbus-daemon") is not None


class PrivateBus:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.socket = node.workdir / "bus.sock"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"unix:path={self.socket}"

    def start(self, timeout: float = 10.0) -> None:
        self.socket.unlink(missing_ok=True)
        self._proc = self.node.spawn(
            ["dbus-daemon", "--session", "--nofork", f"--address={self.address}"],
            log=self.node.workdir / "dbus-daemon.log",
        )
        deadline = time.monotonic() + timeout
        while not self.socket.exists():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise LabError(f"dbus-daemon did not start: see {self.node.workdir}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self._proc is not None:
            stop_process(self._proc)
            self._proc = None
        Path(self.socket).unlink(missing_ok=True)
