"""A vehicle on one machine: a Master node and Sub nodes in network namespaces.

Each Sub is the real ``redstone-sub run`` process in its own namespace with
its own ``someipyd``, a :class:`VirtualNode` (slot files, a real U-Boot env,
a cmdline file) and roots from a shared :class:`UptaneSimulator`. The Master
side is the test process itself: its SOME/IP traffic goes through the Master
node's someipyd (a Unix socket), and an HTTP server in the Master namespace
plays the Master's verified cache.

"Reboot" = the Sub's reboot command drops a marker file; :meth:`SubNode.reboot`
kills the daemon (like a power cut), lets the virtual bootloader choose a
slot and starts the daemon again on it.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from redstone_agent.slots.virtual import VirtualNode
from redstone_agent.someip.messages import InstallRequest
from redstone_agent.uptane.simulator import UptaneSimulator
from tests.integration.netns import Node, Scaffold, SomeIpLab, stop_process

CACHE_PORT = 8765
SUB_PORT = 30510
MASTER_PORT = 30600
SLOT_SIZE = 2 << 20


def _exe(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def sub_toml(
    node: SubNode, *, health_command: list[str], dbus: str, log_format: str = "text"
) -> str:
    trust = node.workdir / "trust"
    return (
        "[sub]\n"
        f'ecu-serial = "{node.serial}"\n'
        f'hardware-id = "{node.hardware_id}"\n'
        f'state-dir = "{node.workdir / "sub-state"}"\n'
        f"reboot-command = {_toml_list(['touch', str(node.reboot_marker)])}\n"
        f'dbus = "{dbus}"\n'
        f'log-format = "{log_format}"\n'
        "[sub.someip]\n"
        f"instance-id = {node.instance_id}\n"
        f'address = "{node.net.ip}"\n'
        f"port = {SUB_PORT}\n"
        f'daemon-socket = "{node.net.socket_path}"\n'
        "[sub.trust]\n"
        f'director-root = "{trust / "director.root.json"}"\n'
        f'image-root = "{trust / "image.root.json"}"\n'
        f'ecu-key = "{trust / "ecu.pem"}"\n'
        "[sub.health]\n"
        f"command = {_toml_list(health_command)}\n"
        "timeout = 10.0\n" + node.virtual.config_toml()
    )


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{item}"' for item in items) + "]"


@dataclass
class SubNode:
    """One domain controller: namespace, virtual slots, config, daemon process."""

    name: str
    serial: str
    hardware_id: str
    instance_id: int
    net: Node
    virtual: VirtualNode
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def workdir(self) -> Path:
        return self.net.workdir

    @property
    def config(self) -> Path:
        return self.workdir / "sub.toml"

    @property
    def reboot_marker(self) -> Path:
        return self.workdir / "reboot-requested"

    @property
    def health_flag(self) -> Path:
        """The health command passes while this file exists."""
        return self.workdir / "healthy"

    @property
    def log(self) -> Path:
        return self.workdir / "sub.log"

    def start(self) -> None:
        self.proc = self.net.spawn(
            [_exe("redstone-sub"), "--config", str(self.config), "run"],
            env=self.env,
            log=self.log,
        )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Power cut (SIGKILL) or orderly stop (SIGTERM)."""
        if self.proc is not None:
            if self.proc.poll() is None:
                # ip netns exec execs the daemon, so the pid is the daemon's.
                os.kill(self.proc.pid, sig)
            self.proc.wait(10)
            self.proc = None

    def wait_reboot_request(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.reboot_marker.exists():
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} never asked to reboot; see {self.log}")
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"{self.name} daemon died; see {self.log}")
            time.sleep(0.05)

    def reboot(self) -> str:
        """Power-cycle: kill, let the virtual bootloader pick a slot, start again."""
        self.kill()
        self.reboot_marker.unlink(missing_ok=True)
        slot = self.virtual.reboot()
        self.start()
        return slot

    def booted(self) -> str:
        return self.virtual.config.cmdline.read_text().split("redstone.slot=")[1].split()[0]

    def slot_bytes(self, slot: str, length: int) -> bytes:
        with self.virtual.config.device(slot).open("rb") as handle:
            return handle.read(length)


class Fleet(Scaffold):
    """The Master node, an image cache, Sub nodes and one Uptane simulator."""

    def __init__(self, workdir: Path, sub_count: int, *, slot_size: int = SLOT_SIZE) -> None:
        self.workdir = workdir
        self.slot_size = slot_size
        names = ["master"] + [f"sub{i}" for i in range(1, sub_count + 1)]
        self.lab = SomeIpLab(workdir, names)
        self.sim = UptaneSimulator.create()
        self.subs: list[SubNode] = []
        self.cache_dir = workdir / "cache"
        self._buses: list[subprocess.Popen[bytes]] = []

    @property
    def master(self) -> Node:
        return self.lab.nodes["master"]

    def _build(self) -> None:
        self.lab.__enter__()
        self.lab.start_daemons()
        self.cache_dir.mkdir()
        server = Path(__file__).with_name("cache_server.py")
        self.master.spawn(
            [sys.executable, str(server), str(self.cache_dir), self.master.ip, str(CACHE_PORT)],
            log=self.workdir / "cache.log",
        )
        roots = self.sim.trusted_roots()
        for index, name in enumerate(self.lab.nodes, start=0):
            if name == "master":
                continue
            net = self.lab.nodes[name]
            trust = net.workdir / "trust"
            trust.mkdir()
            (trust / "director.root.json").write_bytes(roots.director)
            assert roots.image is not None
            (trust / "image.root.json").write_bytes(roots.image)
            _write_key(trust / "ecu.pem")
            virtual = VirtualNode.create(net.workdir / "node", slot_size=self.slot_size)
            sub = SubNode(
                name,
                serial=f"ECU-{name.upper()}",
                hardware_id=f"hw-{name}",
                instance_id=index,
                net=net,
                virtual=virtual,
                env={"DBUS_SESSION_BUS_ADDRESS": self._start_dbus(net.workdir)},
            )
            sub.health_flag.touch()
            sub.config.write_text(
                sub_toml(
                    sub,
                    health_command=["test", "-e", str(sub.health_flag)],
                    dbus="session",
                    log_format="json" if index % 2 == 0 else "text",
                )
            )
            self.subs.append(sub)

    def _start_dbus(self, workdir: Path) -> str:
        """A private session bus per Sub (each owns org.redstone.Sub on its node)."""
        socket = workdir / "dbus.sock"
        address = f"unix:path={socket}"
        proc = subprocess.Popen(
            ["dbus-daemon", "--session", "--nofork", f"--address={address}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not socket.exists():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("dbus-daemon did not start")
            time.sleep(0.02)
        self._buses.append(proc)
        return address

    def publish(self, sub: SubNode, filename: str, data: bytes, release_counter: int) -> None:
        """Put an image in the cache, sign it into the image repo, assign it to *sub*."""
        (self.cache_dir / filename).write_bytes(data)
        self.sim.add_image(filename, data, [sub.hardware_id], release_counter)
        self.sim.assign(sub.serial, sub.hardware_id, filename)

    def install_request(self, filename: str) -> InstallRequest:
        data = (self.cache_dir / filename).read_bytes()
        return InstallRequest(
            target=filename,
            url=f"http://{self.master.ip}:{CACHE_PORT}/{filename}",
            sha256=hashlib.sha256(data).digest(),
            length=len(data),
        )

    def bundle(self) -> bytes:
        return self.sim.bundle().to_bytes()

    def close(self) -> None:
        for sub in self.subs:
            if sub.proc is not None:
                stop_process(sub.proc, grace=2.0)
        for bus in self._buses:
            stop_process(bus)
        self._buses.clear()
        self.lab.close()


def _write_key(path: Path) -> None:
    from redstone_agent.uptane.keys import generate_signer, save_signer

    save_signer(generate_signer(), path)
