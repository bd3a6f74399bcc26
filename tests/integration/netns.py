"""A throw-away SOME/IP network: nodes in network namespaces, one ``someipyd`` each.

Every node is its own network namespace with a veth leg into a private hub
namespace that holds a bridge, so the nodes see each other (unicast and SD
multicast) and nothing else on the machine. Names carry the pid so parallel
test runs never collide; :meth:`SomeIpLab.close` removes every process and
namespace it made, and is safe to call after a half-built setup failed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

SD_ADDRESS = "224.224.224.245"
SD_PORT = 30490
SUBNET = "10.77.0"


def _ip(*args: str, netns: str | None = None) -> None:
    cmd = ["ip", *(["-n", netns] if netns else []), *args]
    subprocess.run(cmd, check=True, capture_output=True, text=True)


def _someipyd() -> str:
    """The someipyd next to the running interpreter (the project venv)."""
    candidate = Path(sys.executable).with_name("someipyd")
    if candidate.exists():
        return str(candidate)
    found = shutil.which("someipyd")
    if found is None:
        raise RuntimeError("someipyd not found: install the 'someip' extra")
    return found


@dataclass
class Node:
    """One ECU: a namespace, an address and the local someipyd socket."""

    name: str
    netns: str
    ip: str
    workdir: Path
    daemon: subprocess.Popen[bytes] | None = None
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def socket_path(self) -> Path:
        return self.workdir / "someipyd.sock"

    @property
    def daemon_config(self) -> Path:
        return self.workdir / "someipyd.json"

    def command(self, argv: Sequence[str]) -> list[str]:
        """Wrap *argv* so it runs inside this node's namespace."""
        return ["ip", "netns", "exec", self.netns, *argv]

    def spawn(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        log: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a process in the namespace; the lab kills it on close."""
        out = (log or (self.workdir / "proc.log")).open("ab")
        proc = subprocess.Popen(
            self.command(argv),
            env={**os.environ, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        self.processes.append(proc)
        return proc

    def start_someipyd(self, timeout: float = 10.0) -> None:
        """(Re)start the node's SOME/IP daemon and wait for its socket."""
        self.stop_someipyd()
        self.socket_path.unlink(missing_ok=True)
        self.daemon_config.write_text(
            json.dumps(
                {
                    "socket_path": str(self.socket_path),
                    "interface": self.ip,
                    "sd_address": SD_ADDRESS,
                    "sd_port": SD_PORT,
                    "log_level": "INFO",
                }
            )
        )
        self.daemon = self.spawn(
            [_someipyd(), "--config", str(self.daemon_config)],
            log=self.workdir / "someipyd.log",
        )
        deadline = time.monotonic() + timeout
        while not self.socket_path.exists():
            if self.daemon.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"someipyd on {self.name} did not start: see {self.workdir}")
            time.sleep(0.02)

    def stop_someipyd(self) -> None:
        if self.daemon is not None:
            stop_process(self.daemon)
            self.daemon = None


def stop_process(proc: subprocess.Popen[bytes], grace: float = 3.0) -> None:
    """SIGTERM, then SIGKILL after *grace* seconds; reaps the child."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()


class Scaffold(ABC):
    """A context manager that builds in ``_build`` and tears down in ``close``,
    also when building failed half-way."""

    @abstractmethod
    def _build(self) -> None:
        """Create everything; may fail half-way (``close`` then cleans up)."""

    @abstractmethod
    def close(self) -> None:
        """Remove whatever ``_build`` created so far; safe after a partial build."""

    def __enter__(self) -> Self:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SomeIpLab(Scaffold):
    """Nodes on one private bridge; use as a context manager."""

    def __init__(self, workdir: Path, names: Sequence[str]) -> None:
        self.workdir = workdir
        self.tag = f"rs{os.getpid()}x{id(self) % 10000}"
        self.hub = f"{self.tag}-hub"
        self.nodes: dict[str, Node] = {}
        self._names = list(names)
        self._namespaces: list[str] = []

    def _add_netns(self, name: str) -> None:
        _ip("netns", "add", name)
        self._namespaces.append(name)
        _ip("link", "set", "lo", "up", netns=name)

    def _build(self) -> None:
        self._add_netns(self.hub)
        _ip("link", "add", "br0", "type", "bridge", "mcast_snooping", "0", netns=self.hub)
        _ip("link", "set", "br0", "up", netns=self.hub)
        for index, name in enumerate(self._names, start=1):
            netns = f"{self.tag}-{index}"
            self._add_netns(netns)
            peer = f"p{index}"
            # Create the pair inside the node, then move one leg to the hub.
            _ip("link", "add", "eth0", "type", "veth", "peer", "name", peer, netns=netns)
            _ip("link", "set", peer, "netns", self.hub, netns=netns)
            _ip("link", "set", peer, "master", "br0", "up", netns=self.hub)
            address = f"{SUBNET}.{index}"
            _ip("addr", "add", f"{address}/24", "dev", "eth0", netns=netns)
            _ip("link", "set", "eth0", "up", netns=netns)
            _ip("route", "add", "224.0.0.0/4", "dev", "eth0", netns=netns)
            workdir = self.workdir / name
            workdir.mkdir(parents=True, exist_ok=True)
            self.nodes[name] = Node(name, netns, address, workdir)

    def start_daemons(self) -> None:
        for node in self.nodes.values():
            node.start_someipyd()

    def close(self) -> None:
        """Kill every process the lab started and delete its namespaces."""
        for node in self.nodes.values():
            for proc in node.processes:
                stop_process(proc, grace=1.0)
        for netns in reversed(self._namespaces):
            with contextlib.suppress(subprocess.CalledProcessError):
                _ip("netns", "del", netns)
        self._namespaces.clear()
