"""One power cycle of the vehicle board, with a command channel to the running guest.

QEMU runs as for the test board (``tools/qemu/machine.py``: TCG, ``-no-reboot``,
so one QEMU run is one power cycle) plus a second serial port, ttyS1, on a
Unix socket. The guest's test-only ``redstone-test-console.service`` runs the
commands sent there (protocol: ``guestfs/console.py``). Extra virtio disks
("USB sticks", ``/dev/vdb``…) carry files in.

    with Guest.start(board.disk, board.workdir / "boot-1.log", sticks=[stick]) as guest:
        guest.wait_ready()
        result = guest.run("systemctl is-active redstone-master")
        guest.run("systemctl reboot")
        record = guest.wait_end(120)          # the guest's own reboot ends the run

Errors are one line (:class:`GuestError`): a timeout, a guest that went away.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tools.qemu.console import BootRecord
from tools.qemu.errors import HarnessError
from tools.qemu.machine import qemu_argv

PREFIX = b"RSCTL "
READY_TIMEOUT_S = 240.0
"""From power-on to the command channel answering: U-Boot, kernel, systemd under TCG."""
READY_ID = 0
"""The id of the line the guest's console service writes once, as it starts."""
PING_S = 10.0
"""How often :meth:`Guest.wait_ready` pings while it waits for the guest's own ready line.
Pings queue in the serial line until the service opens it, and each one then runs a
shell in the guest: the ready line is the signal, a ping only the fallback for a line
the host missed."""


class GuestError(HarnessError):
    """The guest did not answer as expected (timeout, gone, bad reply)."""


@dataclass(frozen=True)
class Result:
    """What one command printed (stdout and stderr together) and its exit status."""

    rc: int
    out: str

    @property
    def ok(self) -> bool:
        return self.rc == 0


class Guest:
    """A running QEMU of the board; use as a context manager (QEMU is killed on exit)."""

    def __init__(self, process: subprocess.Popen[bytes], console: Path, control: Path) -> None:
        self.process = process
        self.console = console
        self.control = control
        self._sock: socket.socket | None = None
        self._buffer = b""
        self._next_id = 1
        self.started = time.monotonic()

    @classmethod
    def start(cls, disk: Path, console: Path, sticks: tuple[Path, ...] = ()) -> Guest:
        """Power the board on; ``sticks`` become /dev/vdb, /dev/vdc… (raw, read-only:
        a stick may be a cache entry that several boards and test streams share)."""
        control = console.with_suffix(".ctl")
        control.unlink(missing_ok=True)
        argv = qemu_argv(disk, console)
        argv += ["-serial", f"unix:{control},server=on,wait=off"]
        for stick in sticks:
            argv += ["-drive", f"file={stick},if=virtio,format=raw,readonly=on"]
        stderr = console.with_name(console.name + ".stderr").open("wb")
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr
        )
        stderr.close()
        return cls(process, console, control)

    def __enter__(self) -> Guest:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.kill()

    # -- the channel -------------------------------------------------------------------

    def _connect(self, deadline: float) -> socket.socket:
        if self._sock is not None:
            return self._sock
        while True:
            if self.process.poll() is not None:
                raise GuestError(
                    f"QEMU ended ({self.process.returncode}) before the channel opened"
                )
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(str(self.control))
                self._sock = sock
                return sock
            except OSError:
                sock.close()
                if time.monotonic() > deadline:
                    raise GuestError(f"no control socket {self.control}") from None
                time.sleep(0.1)

    def _send(self, request: dict[str, object], deadline: float) -> None:
        sock = self._connect(deadline)
        try:
            sock.sendall(json.dumps(request).encode() + b"\n")
        except OSError as exc:
            raise GuestError(
                f"the guest went away ({exc.strerror}; QEMU {self._state()})"
            ) from None

    def _reply(self, wanted: int | set[int], deadline: float) -> dict[str, object] | None:
        """The reply with id ``wanted`` (or any of them), or None at ``deadline``."""
        ids = wanted if isinstance(wanted, set) else {wanted}
        sock = self._connect(deadline)
        while True:
            while b"\n" in self._buffer:
                line, self._buffer = self._buffer.split(b"\n", 1)
                start = line.find(PREFIX)
                if start < 0:
                    continue
                try:
                    reply = json.loads(line[start + len(PREFIX) :])
                except ValueError:
                    continue
                if isinstance(reply, dict) and reply.get("id") in ids:
                    return reply
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            sock.settimeout(min(left, 1.0))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError as exc:
                raise GuestError(f"the guest went away ({exc.strerror})") from None
            if not chunk:
                raise GuestError(f"the guest went away (QEMU {self._state()})")
            self._buffer += chunk

    def _state(self) -> str:
        code = self.process.poll()
        return "still running" if code is None else f"exited {code}"

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> float:
        """Wait until the guest's console service says it is ready (or answers a ping);
        seconds since power-on."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            request_id = self._next_id
            self._next_id += 1
            self._send({"id": request_id, "cmd": "true", "timeout": 5}, deadline)
            wanted = {READY_ID, request_id}
            if self._reply(wanted, min(deadline, time.monotonic() + PING_S)) is not None:
                return time.monotonic() - self.started
        tail = self.record().lines[-3:]
        raise GuestError(f"guest not ready after {timeout:g} s; console ends {tail}")

    def run(self, command: str, timeout: float = 60.0) -> Result:
        """Run ``command`` with /bin/sh in the guest as root; its exit status and output."""
        request_id = self._next_id
        self._next_id += 1
        deadline = time.monotonic() + timeout + 10.0
        self._send({"id": request_id, "cmd": command, "timeout": timeout}, deadline)
        reply = self._reply(request_id, deadline)
        if reply is None:
            raise GuestError(f"no answer to {command!r} within {timeout:g} s")
        out = base64.b64decode(str(reply["out"])).decode(errors="replace")
        rc = reply["rc"]
        return Result(rc if isinstance(rc, int) else -1, out)

    def check(self, command: str, timeout: float = 60.0) -> str:
        """:meth:`run` that must succeed; its output."""
        result = self.run(command, timeout)
        if not result.ok:
            last = result.out.strip().splitlines()[-1:] or ["no output"]
            raise GuestError(f"{command!r} exited {result.rc}: {last[0]}")
        return result.out

    # -- the power cycle ---------------------------------------------------------------

    def record(self, timed_out: bool = False) -> BootRecord:
        """The console so far, parsed."""
        text = self.console.read_text(errors="replace") if self.console.exists() else ""
        return BootRecord(text, timed_out=timed_out)

    def wait_end(self, timeout: float) -> BootRecord:
        """Wait for the guest to end this power cycle itself (reboot, power-off, panic)."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.record(timed_out=True)
        self._close()
        return self.record()

    def _close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def kill(self) -> None:
        """Pull the power (QEMU killed); nothing if it has ended already."""
        self._close()
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
