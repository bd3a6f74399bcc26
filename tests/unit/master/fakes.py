"""Test doubles for the campaign engine: small state machines standing in for
ECUs, the cloud, the trust port and the policy (the engine is the unit under
test; the real ports have their own integration tests)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redstone_agent.journal import Journal
from redstone_agent.master.engine import Engine, Hooks
from redstone_agent.master.errors import CacheFull, DownloadPaused, EcuFailed
from redstone_agent.master.ports import (
    Decision,
    EcuJob,
    EcuStanding,
    Fetched,
    Gate,
    Image,
    OfferedCampaign,
    ProgressFn,
    StepResult,
    Verdict,
    VerifiedCampaign,
)
from redstone_agent.master.record import CampaignRecord
from redstone_agent.master.states import CampaignState
from redstone_agent.master.topology import EcuKind, EcuSpec


@dataclass
class FakeEcu:
    """An A/B ECU: runs ``running``, may hold ``written`` in its other slot."""

    serial: str
    running: str = "v1"
    written: str = ""
    committed: bool = True
    fail: str = ""
    """Name of the operation that fails ("install", "activate", "standing")."""
    calls: list[str] = field(default_factory=list)

    async def manifest(self, nonce: str) -> dict[str, Any]:
        return {"signed": {"filename": self.running, "nonce": nonce}}

    async def standing(self, job: EcuJob) -> EcuStanding:
        if self.fail == "standing":
            raise EcuFailed(self.serial, "no answer")
        if self.running == job.new.target:
            return EcuStanding.NEW if self.committed else EcuStanding.TRIAL
        return EcuStanding.INSTALLED if self.written == job.new.target else EcuStanding.OLD

    async def install(self, job: EcuJob, progress: ProgressFn) -> StepResult:
        self.calls.append("install")
        await asyncio.sleep(0)
        if self.fail == "install":
            raise EcuFailed(self.serial, "INSTALL_FAILED: check routine answered NRC 0x22")
        if self.running != job.new.target:
            self.written = job.new.target
        progress(job.new.length, job.new.length)
        return StepResult(bytes_sent=job.new.length)

    async def activate(self, job: EcuJob) -> StepResult:
        self.calls.append("activate")
        await asyncio.sleep(0)
        if self.fail == "activate":
            raise EcuFailed(self.serial, "HEALTH_CHECK_FAILED: app did not start")
        if self.written == job.new.target:
            self.running, self.written, self.committed = job.new.target, "v1", False
        return StepResult()

    async def commit(self, job: EcuJob) -> StepResult:
        self.calls.append("commit")
        await asyncio.sleep(0)
        if self.running == job.new.target:
            self.committed, self.written = True, ""
        return StepResult()

    async def rollback(self, job: EcuJob) -> StepResult:
        self.calls.append("rollback")
        await asyncio.sleep(0)
        assert self.committed or self.running == job.new.target
        if self.running == job.new.target and not self.committed:
            self.running, self.committed = self.written, True
        self.written = ""
        return StepResult()


class FakeCloud:
    def __init__(self, ecus: Mapping[str, FakeEcu], offer: OfferedCampaign | None) -> None:
        self.ecus = ecus
        self.offer = offer
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.manifests = 0

    async def poll(self) -> OfferedCampaign | None:
        return self.offer

    async def report_manifest(self) -> Mapping[str, str]:
        self.manifests += 1
        return await self.collect_running()

    async def collect_running(self) -> Mapping[str, str]:
        return {s: e.running for s, e in self.ecus.items()}

    async def event(
        self, kind: str, campaign: str | None, ecu_serial: str = "", **detail: Any
    ) -> None:
        self.events.append((kind, detail))


class FakeTrust:
    def __init__(self, tmp: Path, targets: Mapping[str, str]) -> None:
        self.tmp = tmp
        self.targets = targets
        self.refuse = ""
        self.fetches = 0

    async def verify(self, offer: OfferedCampaign, running: Mapping[str, str]) -> VerifiedCampaign:
        if self.refuse == "verify":
            raise EcuFailed("director", "targets: signature threshold not met")
        images = {
            s: Image(t, "ab" * 32, 1000, t, self.tmp / t, f"http://cache/{t}")
            for s, t in self.targets.items()
        }
        return VerifiedCampaign(targets=images, bundle=b"{}", bundle_url="http://cache/m")

    async def fetch(
        self, campaign: VerifiedCampaign, progress: ProgressFn
    ) -> Mapping[str, Fetched]:
        self.fetches += 1
        if self.refuse == "fetch":
            raise CacheFull("campaign needs 3.0 MiB, cache budget is 1.0 MiB")
        if self.refuse == "offline":
            self.refuse = ""
            raise DownloadPaused("ADAS-1: https://cloud/t: connection refused")
        return {s: Fetched(1000) for s in campaign.targets}


class Policy:
    """Answers per gate, in order; ALLOW once a gate's answers are used up."""

    def __init__(self) -> None:
        self.answers: dict[Gate, list[Verdict]] = {}
        self.asked: list[Gate] = []

    async def check(self, gate: Gate, campaign: str, consent_required: bool) -> Verdict:
        self.asked.append(gate)
        queue = self.answers.get(gate, [])
        return queue.pop(0) if queue else Verdict(Decision.ALLOW)

    async def wait_change(self, timeout_s: float) -> None:
        await asyncio.sleep(0)


SPECS = [
    EcuSpec("ADAS-1", EcuKind.SUB, "adas-hw", instance_id=1),
    EcuSpec("BODY-1", EcuKind.SUB, "body-hw", instance_id=2),
    EcuSpec("BCM-1", EcuKind.UDS_DOCAN, "bcm-hw", bus="can0", uds_config=Path("bcm.toml")),
    EcuSpec("TBOX-1", EcuKind.SELF, "tbox-hw"),
]
ESP = EcuSpec("ESP-1", EcuKind.UDS_DOCAN, "esp-hw", bus="can0", uds_config=Path("esp.toml"))
"""A second UDS ECU on BCM-1's bus (never flashed at the same time)."""
OFFER = OfferedCampaign("spring", False, {"ADAS-1": "adas-v2", "BODY-1": "body-v2"})


@dataclass
class Vehicle:
    tmp: Path
    ecus: dict[str, FakeEcu] = field(default_factory=dict)
    cloud: FakeCloud | None = None
    trust: FakeTrust | None = None
    policy: Any = field(default_factory=Policy)
    published: list[tuple[CampaignState, str]] = field(default_factory=list)
    specs: list[EcuSpec] = field(default_factory=lambda: list(SPECS))

    def __post_init__(self) -> None:
        self.ecus = {s.serial: FakeEcu(s.serial) for s in self.specs}
        self.cloud = FakeCloud(self.ecus, OFFER)
        targets = {"ADAS-1": "adas-v2", "BODY-1": "body-v2", "BCM-1": "bcm-v2"}
        for spec in self.specs:
            if spec.kind is not EcuKind.SELF:
                targets.setdefault(spec.serial, f"{spec.serial.lower()}-v2")
        self.trust = FakeTrust(self.tmp, targets)

    def engine(self, publish: Any = None, activation: Any = "as-ready", **options: Any) -> Engine:
        async def no_sleep(_s: float) -> None:
            await asyncio.sleep(0)

        assert self.cloud is not None and self.trust is not None
        return Engine(
            ecus=self.specs,
            ports=self.ecus,
            cloud=self.cloud,
            trust=self.trust,
            policy=self.policy,
            journal=Journal(self.tmp / "campaign.json"),
            plan_journal=Journal(self.tmp / "plan.json"),
            hooks=Hooks(publish=publish or self._remember, sleep=no_sleep),
            activation=activation,
            **options,
        )

    def _remember(self, record: CampaignRecord) -> None:
        self.published.append((record.state, record.detail))

    def versions(self) -> set[str]:
        return {self.ecus[s].running for s in ("ADAS-1", "BODY-1", "BCM-1")}


def run(coro: Any) -> Any:
    async def with_pending_tasks() -> Any:
        result = await coro
        await asyncio.sleep(0.01)  # let fire-and-forget events and the final manifest go
        return result

    return asyncio.run(with_pending_tasks())
