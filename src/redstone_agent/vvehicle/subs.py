"""The virtual domain controllers: factory provisioning and the real ``redstone-sub``.

Each Sub is a :class:`VirtualNode` (slot files, a real U-Boot env, a cmdline
file) on its own lab node with its own ``someipyd``. The *factory* step
writes what a production line would: the v1 image into slot A, the ECU key,
the trust roots, and the Sub's journal naming v1 as its committed image, so
its first signed manifest reports v1 and the director can offer a delta
from it. A :class:`Supervisor` per Sub plays power and bootloader.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from redstone_agent.journal import Journal
from redstone_agent.slots.virtual import VirtualNode
from redstone_agent.sub.engine import Record
from redstone_agent.uptane.keys import save_signer
from redstone_agent.uptane.tufapi import CryptoSigner
from redstone_agent.vvehicle.images import SUB_SLOT_SIZE, version_of
from redstone_agent.vvehicle.journals import peek_journal
from redstone_agent.vvehicle.netlab import Node, executable
from redstone_agent.vvehicle.plan import EcuPlan, SubFiles, sub_toml

log = logging.getLogger(__name__)
SUPERVISE_INTERVAL_S = 0.1
MAX_RESTARTS = 5
"""Unexpected exits restarted per Sub before the supervisor gives up on it."""


@dataclass
class SubNode:
    """One domain controller: node, virtual storage, config and daemon process."""

    ecu: EcuPlan
    net: Node
    virtual: VirtualNode
    signer: CryptoSigner
    proc: subprocess.Popen[bytes] | None = None
    reboots: int = 0
    restarts: int = 0
    powered: bool = True
    """False between :meth:`power_off` and :meth:`power_on`: the supervisor leaves it off."""
    lock: threading.Lock = field(default_factory=threading.Lock)

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
    def log(self) -> Path:
        return self.workdir / "sub.log"

    @property
    def state_dir(self) -> Path:
        return self.workdir / "sub-state"

    @property
    def journal(self) -> Path:
        """The daemon's journal (read it with :func:`peek_journal` while the daemon runs)."""
        return self.state_dir / "sub.json"

    def start(self) -> None:
        self.proc = self.net.spawn(
            [executable("redstone-sub"), "--config", str(self.config), "run"], log=self.log
        )

    def kill(self) -> None:
        """Power cut: SIGKILL (``ip netns exec`` execs, so the pid is the daemon's)."""
        if self.proc is not None:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None

    def power_cycle(self) -> str:
        """Kill the daemon, let the virtual bootloader pick a slot, start again on it."""
        with self.lock:
            return self._cycle()

    def _cycle(self) -> str:
        self.kill()
        self.reboot_marker.unlink(missing_ok=True)
        slot = self.virtual.reboot()
        self.reboots += 1
        self.powered = True
        self.start()
        return slot

    def power_off(self) -> None:
        """The domain controller vanishes: daemon SIGKILLed and kept off (no restart)."""
        with self.lock:
            self.powered = False
            self.kill()

    def power_on(self) -> str:
        """Power returns after :meth:`power_off`: the bootloader picks a slot, the daemon
        starts on it. Returns the slot."""
        with self.lock:
            return self._cycle()

    def restart(self) -> None:
        """Restart the daemon (e.g. after its config or trust files changed)."""
        with self.lock:
            self.kill()
            self.start()

    @property
    def director_root(self) -> Path:
        """The director root the Sub verifies metadata against (``trust.director-root``)."""
        return self.workdir / "trust" / "director.root.json"

    def trust_director(self, root: bytes) -> None:
        """Give the Sub *root* as its director trust anchor and restart it on it."""
        self.director_root.write_bytes(root)
        self.restart()

    def state(self) -> str:
        """The Sub's update state as its journal names it (``IDLE``, ``TRANSFERRING``...)."""
        saved = peek_journal(self.journal)
        return str(saved.get("state", ""))

    def booted(self) -> str:
        """The slot the (virtual) kernel command line names."""
        text = self.virtual.config.cmdline.read_text()
        return text.split("redstone.slot=")[1].split()[0]

    def running_version(self) -> str:
        """The version the booted slot's image carries (read from the slot itself)."""
        with self.virtual.config.device(self.booted()).open("rb") as slot:
            return version_of(slot.read(64))

    def committed_target(self) -> str:
        """The target the Sub's journal names as committed."""
        saved = peek_journal(self.journal)
        return str(saved.get("current", ""))

    def committed_sha256(self) -> str:
        """The sha256 of the image the Sub's journal names as committed (for a delta
        install: the image it built, not the delta file)."""
        saved = peek_journal(self.journal)
        return str(saved.get("current_sha256", ""))


def provision_sub(
    ecu: EcuPlan,
    net: Node,
    *,
    signer: CryptoSigner,
    factory_image: bytes,
    release_counter: int,
    director_root: bytes,
    image_root: bytes,
) -> SubNode:
    """The factory step: slots, v1 in slot A, key, roots, journal, config."""
    virtual = VirtualNode.create(net.workdir / "node", slot_size=SUB_SLOT_SIZE)
    with virtual.config.device("A").open("r+b") as slot:
        slot.write(factory_image)
    trust = net.workdir / "trust"
    trust.mkdir(exist_ok=True)
    (trust / "director.root.json").write_bytes(director_root)
    (trust / "image.root.json").write_bytes(image_root)
    save_signer(signer, trust / "ecu.pem")
    sub = SubNode(ecu, net, virtual, signer)
    factory = Record(
        current=ecu.target(version_of(factory_image)),
        current_length=len(factory_image),
        current_sha256=hashlib.sha256(factory_image).hexdigest(),
        release_counter=release_counter,
    )
    Journal(sub.journal).save(factory.to_dict())
    files = SubFiles(
        state_dir=sub.state_dir,
        director_root=trust / "director.root.json",
        image_root=trust / "image.root.json",
        ecu_key=trust / "ecu.pem",
        someip_socket=net.socket_path,
        reboot_marker=sub.reboot_marker,
        slots_toml=virtual.config_toml(),
    )
    sub.config.write_text(sub_toml(ecu, files, address=net.ip))
    return sub


class Supervisor:
    """Plays power supply and bootloader for the Subs, in one background thread.

    A Sub's reboot command only drops a marker file; the supervisor sees it,
    cuts the daemon (SIGKILL, like pulling power), lets the virtual
    bootloader choose the slot and starts the daemon again. A daemon that
    dies by itself is restarted as systemd would, and said so.
    """

    def __init__(self, subs: list[SubNode]) -> None:
        self.subs = subs
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sub-supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(SUPERVISE_INTERVAL_S):
            for sub in self.subs:
                if self._stop.is_set():
                    return
                self._tend(sub)

    def _tend(self, sub: SubNode) -> None:
        """One look at one Sub, under its lock (power_off/restart never race with it)."""
        with sub.lock:
            if not sub.powered:
                return
            if sub.reboot_marker.exists():
                slot = sub._cycle()
                log.info("%s rebooted into slot %s", sub.ecu.role, slot)
            elif (
                sub.proc is not None and sub.proc.poll() is not None and sub.restarts < MAX_RESTARTS
            ):
                sub.restarts += 1
                log.warning(
                    "%s: redstone-sub exited (%s); restarting it, see %s",
                    sub.ecu.role,
                    sub.proc.returncode,
                    sub.log,
                )
                sub.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
