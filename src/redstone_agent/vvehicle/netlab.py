"""A throw-away vehicle network: one node per ECU, each with its own ``someipyd``.

As root every node is its own network namespace with a veth leg into a
private hub namespace that holds a bridge, so the nodes see each other
(unicast, SOME/IP SD multicast, udp_multicast CAN) and nothing else on the
machine (:class:`SomeIpLab`). Without root the nodes share the default
namespace, each on its own loopback address (:class:`LoopbackLab`): two
someipyd on 127.0.0.1 and 127.0.0.2 find each other without route changes,
but nothing contains multicast CAN there. Namespace names carry the pid so
parallel runs never collide; ``close`` removes every process and namespace a
lab made and is safe after a half-built setup failed.
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

from redstone_agent.vvehicle.errors import LabError

SD_ADDRESS = "224.224.224.245"
SD_PORT = 30490
SUBNET = "10.77.0"
LOOPBACK = "127.0.0"


def _ip(*args: str, netns: str | None = None) -> None:
    cmd = ["ip", *(["-n", netns] if netns else []), *args]
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as exc:
        raise LabError(f"{' '.join(cmd)}: {exc.stderr.strip() or exc}") from None


def _tc(*args: str, netns: str, missing_ok: bool = False) -> None:
    """``tc`` inside *netns*; with *missing_ok* a qdisc that is not there is no error."""
    cmd = ["ip", "netns", "exec", netns, "tc", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    absent = "No such file" in done.stderr or "handle of zero" in done.stderr
    if done.returncode != 0 and not (missing_ok and absent):
        raise LabError(f"{' '.join(cmd)}: {done.stderr.strip() or done.returncode}")


def executable(name: str) -> str:
    """A command installed next to the running interpreter (the venv), else on PATH."""
    candidate = Path(sys.executable).with_name(name)
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise LabError(f"{name} not found: install redstone-ota with its extras")
    return found


def _someipyd() -> str:
    """The hardened daemon (docs/someip.md §10): the stock one desyncs on one bad datagram."""
    return executable("redstone-someipyd")


def have_namespaces() -> bool:
    """Network namespaces need root (CAP_SYS_ADMIN) and the ``ip`` tool."""
    return os.geteuid() == 0 and shutil.which("ip") is not None


@dataclass
class Node:
    """One ECU: an optional namespace, an address and the local someipyd socket."""

    name: str
    netns: str | None
    """None: the default namespace (unprivileged lab)."""
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
        """Wrap *argv* so it runs inside this node's namespace (if it has one)."""
        if self.netns is None:
            return list(argv)
        return ["ip", "netns", "exec", self.netns, *argv]

    def spawn(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        log: Path | None = None,
        stdout: int | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a process on the node; the lab stops it on close.

        Output goes to *log* (default ``proc.log`` in the node's workdir), or to
        a pipe when ``stdout=subprocess.PIPE`` (stderr still to the log).
        """
        out = (log or (self.workdir / "proc.log")).open("ab")
        try:
            proc = subprocess.Popen(
                self.command(argv),
                env={**os.environ, **(env or {})},
                stdout=out if stdout is None else stdout,
                stderr=out if stdout is not None else subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            out.close()
        self.processes.append(proc)
        return proc

    def run(self, argv: Sequence[str], *, timeout: float = 60.0) -> str:
        """Run a short command on the node and return its stdout; failure is a LabError."""
        try:
            done = subprocess.run(
                self.command(argv),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise LabError(f"{self.name}: {argv[0]} took more than {timeout:g} s") from None
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise LabError(f"{self.name}: {Path(argv[0]).name} failed: {last}")
        return done.stdout

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
                raise LabError(f"someipyd on {self.name} did not start: see {self.workdir}")
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


class Lab(Scaffold):
    """Named nodes that reach each other; subclasses decide how they are isolated."""

    isolated: bool = False
    """True when every node has its own network namespace."""

    def __init__(self, workdir: Path, names: Sequence[str]) -> None:
        self.workdir = workdir
        self.nodes: dict[str, Node] = {}
        self._names = list(names)

    def _workdir(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def start_daemons(self, names: Sequence[str] | None = None) -> None:
        """Start someipyd on the named nodes (default: all)."""
        for name in names if names is not None else self.nodes:
            self.nodes[name].start_someipyd()

    def unplug(self, name: str) -> None:
        """Cut node *name* off the vehicle network, as if its cable were pulled: its
        interface stays configured (addresses, routes) but nothing passes until
        :meth:`plug`. Open TCP connections stall rather than end."""
        raise LabError(f"{type(self).__name__}: cutting a link needs network namespaces (root)")

    def plug(self, name: str) -> None:
        """Reconnect node *name* after :meth:`unplug`."""
        raise LabError(f"{type(self).__name__}: cutting a link needs network namespaces (root)")

    def limit_rate(self, name: str, kbit: int | None) -> None:
        """Limit node *name*'s link to *kbit* kbit/s each way (``None``: full speed again),
        so a download or transfer lasts long enough to interrupt it on purpose."""
        raise LabError(f"{type(self).__name__}: shaping a link needs network namespaces (root)")

    def _stop_processes(self) -> None:
        for node in self.nodes.values():
            for proc in reversed(node.processes):
                stop_process(proc, grace=1.0)
            node.processes.clear()
            node.daemon = None


class SomeIpLab(Lab):
    """Nodes in network namespaces on one private bridge (needs root)."""

    isolated = True

    def __init__(self, workdir: Path, names: Sequence[str]) -> None:
        super().__init__(workdir, names)
        self.tag = f"rs{os.getpid()}x{id(self) % 10000}"
        self.hub = f"{self.tag}-hub"
        self._namespaces: list[str] = []
        self._ports: dict[str, str] = {}
        """node name → its veth leg in the hub (the switch port)."""

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
            self.nodes[name] = Node(name, netns, address, self._workdir(name))
            self._ports[name] = peer

    def _port(self, name: str) -> str:
        """The hub-side leg of node *name*'s veth pair (its switch port)."""
        if name not in self._ports:
            raise LabError(f"no lab node {name!r} (nodes: {', '.join(self._ports)})")
        return self._ports[name]

    def unplug(self, name: str) -> None:
        # Down on the switch side: the node sees NO-CARRIER and keeps its routes.
        _ip("link", "set", self._port(name), "down", netns=self.hub)

    def plug(self, name: str) -> None:
        _ip("link", "set", self._port(name), "up", netns=self.hub)

    def limit_rate(self, name: str, kbit: int | None) -> None:
        # A token bucket on both legs: the node's eth0 shapes what it sends, the
        # switch port what it receives.
        legs = [(self.nodes[name].netns, "eth0"), (self.hub, self._port(name))]
        for netns, dev in legs:
            assert netns is not None
            if kbit is None:
                _tc("qdisc", "del", "dev", dev, "root", netns=netns, missing_ok=True)
            else:
                burst = max(kbit * 1000 // 8 // 10, 4096)  # ~100 ms worth, at least 4 KiB
                _tc(
                    "qdisc",
                    "replace",
                    "dev",
                    dev,
                    "root",
                    "tbf",
                    "rate",
                    f"{kbit}kbit",
                    "burst",
                    str(burst),
                    "latency",
                    "2s",
                    netns=netns,
                )

    def close(self) -> None:
        """Kill every process the lab started and delete its namespaces."""
        self._stop_processes()
        for netns in reversed(self._namespaces):
            with contextlib.suppress(LabError):
                _ip("netns", "del", netns)
        self._namespaces.clear()


class LoopbackLab(Lab):
    """Nodes in the default namespace, each on its own 127.0.0.x address (no root)."""

    def _build(self) -> None:
        for index, name in enumerate(self._names, start=1):
            self.nodes[name] = Node(name, None, f"{LOOPBACK}.{index}", self._workdir(name))

    def close(self) -> None:
        self._stop_processes()


def open_lab(workdir: Path, names: Sequence[str], *, isolated: bool | None = None) -> Lab:
    """Namespaces when we may make them (or when asked), loopback addresses otherwise."""
    wanted = have_namespaces() if isolated is None else isolated
    return SomeIpLab(workdir, names) if wanted else LoopbackLab(workdir, names)
