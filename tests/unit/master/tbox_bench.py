"""A TBox that updates itself, off QEMU: the real engine, the real ``SelfPort`` over the
real ``SlotManager`` on file-backed slots with a real U-Boot env (``VirtualNode``),
and the fake vehicle ECUs of ``fakes.py`` beside it.

A reboot is what it is on a bench: the engine asked for it (``reboots``), the
test drops that engine (its process is gone), lets the bootloader choose a
slot (``VirtualNode.reboot`` applies the boot script's rule to the env and
rewrites the cmdline file) and starts a fresh engine with fresh adapters on
the same journals, which recovers. Whether the "new image" is healthy is what
its health check answers after that boot (``health``); a kernel panic is a
boot after which no Master runs at all (``panic``).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from redstone_agent.journal import Journal
from redstone_agent.master.ecu_bootloader import BootloaderPort
from redstone_agent.master.ecu_self import SelfPort
from redstone_agent.master.engine import Engine, Hooks
from redstone_agent.master.ports import (
    DeltaImage,
    EcuPort,
    HealthCheck,
    Image,
    OfferedCampaign,
    SelfUpdate,
    VerifiedCampaign,
)
from redstone_agent.master.record import CampaignRecord
from redstone_agent.master.topology import EcuKind, EcuSpec
from redstone_agent.slots import SlotManager
from redstone_agent.slots.bootloader import UBootEnv
from redstone_agent.slots.bootscript import BootScriptStore
from redstone_agent.slots.bootscript_config import BootScriptConfig, CopyConfig
from redstone_agent.slots.virtual import VirtualNode
from redstone_agent.uptane.keys import generate_signer
from tests.integration.slots.bootscript_bench import COPY_SIZE, mkimage
from tests.support import require_tool
from tests.unit.master.fakes import SPECS, FakeTrust, Vehicle

TBOX = "TBOX-1"
BOOT = "TBOX-1-BOOT"
BOOT_SPEC = EcuSpec(BOOT, EcuKind.BOOTLOADER, "tbox-boot", bootscript={"A": "a", "B": "b"})
SLOT_SIZE = 256 << 10
OFFER = OfferedCampaign("tbox-spring", False, {"ADAS-1": "adas-v2", TBOX: "tbox-v2"})


class TBoxTrust(FakeTrust):
    """The fake trust port, with the TBox's image a real file (hash and length checked)."""

    def __init__(self, tmp: Path, targets: Mapping[str, str], real: Mapping[str, Image]) -> None:
        super().__init__(tmp, targets)
        self.real = dict(real)
        self.deltas: dict[str, DeltaImage] = {}

    async def verify(self, offer: OfferedCampaign, running: Mapping[str, str]) -> VerifiedCampaign:
        plan = await super().verify(offer, running)
        return replace(plan, targets={**plan.targets, **self.real}, deltas=self.deltas)


@dataclass
class Clock:
    """Monotonic time that moves only when the engine sleeps (no real waiting)."""

    now: float = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


@dataclass
class TBoxBench:
    tmp: Path
    vehicle: Vehicle
    node: VirtualNode
    image: Image
    health: str = ""
    """Why the health check fails after the next boots ("" = healthy)."""
    reboots: int = 0
    """Reboots the engines asked for."""
    fail_reboot: str = ""
    script: BootScriptConfig | None = None
    """With a bootloader ECU: its two copies, switched in the TBox's own env."""
    clock: Clock = field(default_factory=Clock)
    published: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    """(campaign state, ECU serial -> step) at every publish."""

    @property
    def state_dir(self) -> Path:
        return self.tmp / "master"

    def slots(self) -> SlotManager:
        return SlotManager(self.node.config)

    def ports(self) -> dict[str, EcuPort]:
        spec = next(s for s in SPECS if s.serial == TBOX)
        own = SelfPort(spec, generate_signer(), self.state_dir, self.slots())
        others: dict[str, EcuPort] = {s: e for s, e in self.vehicle.ecus.items() if s != TBOX}
        ports = {**others, TBOX: own}
        if self.script is not None:
            ports[BOOT] = BootloaderPort(BOOT_SPEC, self.store(), generate_signer())
        return ports

    def store(self) -> BootScriptStore:
        assert self.script is not None
        return BootScriptStore(self.script, UBootEnv(self.node.config.bootloader.uboot))

    def engine(self, publish: Any = None, **options: Any) -> Engine:
        """A fresh Master process: new adapters, the same journals and slots."""

        async def health() -> tuple[bool, str]:
            return (not self.health, self.health or "app answers")

        update = SelfUpdate(
            reboot=self._reboot,
            checks=[HealthCheck("app", health)],
            timeout_s=30.0,
            interval_s=5.0,
        )
        v = self.vehicle
        assert v.cloud is not None and v.trust is not None
        return Engine(
            ecus=v.specs,
            ports=self.ports(),
            cloud=v.cloud,
            trust=v.trust,
            policy=v.policy,
            journal=Journal(self.state_dir / "campaign.json"),
            plan_journal=Journal(self.state_dir / "plan.json"),
            hooks=Hooks(
                publish=publish or self._remember, sleep=self.clock.sleep, clock=self.clock
            ),
            **{"self_update": update, **options},
        )

    async def _reboot(self) -> None:
        if self.fail_reboot:
            raise RuntimeError(self.fail_reboot)
        self.reboots += 1

    def _remember(self, record: CampaignRecord) -> None:
        self.published.append((record.state.value, {s: e.step for s, e in record.ecus.items()}))

    def power_cycle(self, *, panic: bool = False) -> str:
        """The TBox restarts: U-Boot picks a slot. With ``panic`` the new image never
        reaches the Master: U-Boot is run again until it boots a committed slot."""
        booted = self.node.reboot()
        while panic and not self._committed(booted):
            booted = self.node.reboot()
        return booted

    def _committed(self, slot: str) -> bool:
        return self.node.bootenv.load_state().slots[slot].ok

    def booted(self) -> str:
        return self.slots().booted

    def journaled(self) -> dict[str, Any]:
        return Journal(self.state_dir / "campaign.json").load() or {}


def make_tbox_bench(tmp: Path, *, bootscript: bool = False) -> TBoxBench:
    """A vehicle whose campaign updates ADAS-1 and the TBox's rootfs (and its boot script)."""
    require_tool("fw_setenv")
    vehicle = Vehicle(tmp, specs=[*SPECS, *([BOOT_SPEC] if bootscript else [])])
    node = VirtualNode.create(tmp / "tbox", slot_size=SLOT_SIZE)
    data = b"TBOX-v2 rootfs " * 1000
    path = tmp / "tbox-v2.img"
    path.write_bytes(data)
    image = Image("tbox-v2", hashlib.sha256(data).hexdigest(), len(data), "tbox-v2", path, "")
    assert vehicle.cloud is not None
    real = {TBOX: image}
    script = None
    if bootscript:
        old = mkimage(tmp, "boot-old", "echo old\n" * 20)
        new = mkimage(tmp, "boot-new", "echo new\n" * 40)
        for name in "AB":
            (tmp / f"script{name}.bin").write_bytes(old.data + b"\xff" * (COPY_SIZE - old.length))
        script = BootScriptConfig(
            copies={name: CopyConfig(tmp / f"script{name}.bin") for name in "AB"},
            uboot=node.config.bootloader.uboot,
            state_dir=tmp / "tbox" / "state",
        )
        real[BOOT] = Image("boot-v2", new.sha256, new.length, "boot-v2", new.path, "")
    targets = {"ADAS-1": "adas-v2", **{s: i.target for s, i in real.items()}}
    vehicle.cloud.offer = replace(OFFER, ecus=targets)
    vehicle.trust = TBoxTrust(tmp, targets, real)
    (tmp / "master").mkdir()
    return TBoxBench(tmp, vehicle, node, image, script=script)


def run_until_settled_or_reboot(engine: Engine, coro: Any) -> None:
    """Run one engine entry point to its end (a settled campaign, or a reboot asked)."""

    async def go() -> None:
        await coro
        await asyncio.sleep(0.01)  # fire-and-forget events and the final manifest

    asyncio.run(go())
