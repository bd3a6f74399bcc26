"""A Sub engine on a real virtual A/B node, shared by the engine and D-Bus tests."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from redstone_agent.journal import Journal
from redstone_agent.retry import RetryPolicy
from redstone_agent.slots.virtual import VirtualNode
from redstone_agent.someip.interface import SubState
from redstone_agent.someip.messages import DeltaInfo, InstallRequest, Status
from redstone_agent.sub.config import TrustConfig
from redstone_agent.sub.engine import MARK_BAD_RETRY, Engine, Hooks
from redstone_agent.sub.slots_adapter import ManagedSlots
from redstone_agent.sub.trust import ManifestSigner, SubTrust
from redstone_agent.uptane.simulator import UptaneSimulator
from tests.support import require_tool

S = SubState
SERIAL, HW = "ECU-1", "hw-1"


@dataclass
class Bench:
    """A virtual node, an Uptane simulator and the engine's outside world."""

    root: Path
    node: VirtualNode
    sim: UptaneSimulator
    healthy: bool = True
    events: list[Status] = field(default_factory=list)
    reboots: int = 0

    def engine(
        self,
        journal: Journal | None = None,
        *,
        partial: bool = False,
        mark_bad_retry: RetryPolicy = MARK_BAD_RETRY,
    ) -> Engine:
        roots = self.sim.trusted_roots()
        trust_dir = self.root / "trust"
        trust_dir.mkdir(exist_ok=True)
        (trust_dir / "director.json").write_bytes(roots.director)
        assert roots.image is not None
        (trust_dir / "image.json").write_bytes(roots.image)
        config = TrustConfig(trust_dir / "director.json", trust_dir / "image.json")
        if partial:
            config = TrustConfig(trust_dir / "director.json", None, "partial")

        async def reboot() -> None:
            self.reboots += 1

        async def health() -> tuple[bool, str]:
            return self.healthy, "healthy" if self.healthy else "app crashed"

        key = self.root / "ecu.key"
        return Engine(
            ecu_serial=SERIAL,
            hardware_id=HW,
            slots=ManagedSlots(self.node.config),
            trust=SubTrust(config, SERIAL, HW, self.root / "state"),
            journal=journal or Journal(self.journal_path),
            hooks=Hooks(
                publish=self.events.append,
                reboot=reboot,
                health=health,
                sign_manifest=ManifestSigner(key) if key.exists() else None,
            ),
            mark_bad_retry=mark_bad_retry,
        )

    @property
    def journal_path(self) -> Path:
        return self.root / "state" / "sub.json"

    def publish(self, name: str, data: bytes, counter: int) -> InstallRequest:
        path = self.root / name
        path.write_bytes(data)
        self.sim.add_image(name, data, [HW], counter)
        self.sim.assign(SERIAL, HW, name)
        return InstallRequest(name, str(path), hashlib.sha256(data).digest(), len(data))

    def publish_delta(
        self, name: str, delta: bytes, source: bytes, result: bytes, counter: int
    ) -> InstallRequest:
        """Sign ``delta`` as the director's target and build the Install a Master sends.

        The target is the delta file (its length and hash, ``delta_source_sha256``
        = the source image); the request names the result image in
        ``sha256``/``length`` and the delta file in ``delta`` (docs/someip.md).
        """
        path = self.root / name
        path.write_bytes(delta)
        source_sha256 = hashlib.sha256(source).hexdigest()
        self.sim.add_image(name, delta, [HW], counter, delta_source_sha256=source_sha256)
        self.sim.assign(SERIAL, HW, name, delta_source_sha256=source_sha256)
        return InstallRequest(
            name,
            str(path),
            hashlib.sha256(result).digest(),
            len(result),
            DeltaInfo(
                str(path),
                hashlib.sha256(delta).digest(),
                len(delta),
                bytes.fromhex(source_sha256),
            ),
        )


def make_bench(tmp_path: Path) -> Bench:
    """A fresh node booted from slot A with an empty journal."""
    require_tool("fw_setenv")
    node = VirtualNode.create(tmp_path / "node", slot_size=1 << 20)
    (tmp_path / "state").mkdir()
    return Bench(tmp_path, node, UptaneSimulator.create())
