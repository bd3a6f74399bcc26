"""The campaign engine driven through its ports: happy path, every failure, a kill in every state.

The ECUs here are small state machines standing in for real ECUs (the
engine is the unit under test; the real ports have their own integration
tests). They keep their state across an engine "kill" — the task is
cancelled right after a transition was journaled, and a new engine recovers
from the same journal files, as a restarted Master would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

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
from redstone_agent.master.record import CampaignRecord, EcuOutcome
from redstone_agent.master.states import NEXT, CampaignState, IllegalTransition, require
from redstone_agent.master.topology import EcuKind, EcuSpec

S = CampaignState


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
    def __init__(self) -> None:
        self.answers: list[Verdict] = []

    async def check(self, gate: Gate, campaign: str, consent_required: bool) -> Verdict:
        return self.answers.pop(0) if self.answers else Verdict(Decision.ALLOW)


SPECS = [
    EcuSpec("ADAS-1", EcuKind.SUB, "adas-hw", instance_id=1),
    EcuSpec("BODY-1", EcuKind.SUB, "body-hw", instance_id=2),
    EcuSpec("BCM-1", EcuKind.UDS_DOCAN, "bcm-hw", bus="can0", uds_config=Path("bcm.toml")),
    EcuSpec("TBOX-1", EcuKind.SELF, "tbox-hw"),
]
OFFER = OfferedCampaign("spring", False, {"ADAS-1": "adas-v2", "BODY-1": "body-v2"})


@dataclass
class Vehicle:
    tmp: Path
    ecus: dict[str, FakeEcu] = field(default_factory=dict)
    cloud: FakeCloud | None = None
    trust: FakeTrust | None = None
    policy: Policy = field(default_factory=Policy)
    published: list[tuple[CampaignState, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ecus = {s.serial: FakeEcu(s.serial) for s in SPECS}
        self.cloud = FakeCloud(self.ecus, OFFER)
        self.trust = FakeTrust(
            self.tmp, {"ADAS-1": "adas-v2", "BODY-1": "body-v2", "BCM-1": "bcm-v2"}
        )

    def engine(self, publish: Any = None, activation: Any = "as-ready") -> Engine:
        async def no_sleep(_s: float) -> None:
            await asyncio.sleep(0)

        assert self.cloud is not None and self.trust is not None
        return Engine(
            ecus=SPECS,
            ports=self.ecus,
            cloud=self.cloud,
            trust=self.trust,
            policy=self.policy,
            journal=Journal(self.tmp / "campaign.json"),
            plan_journal=Journal(self.tmp / "plan.json"),
            hooks=Hooks(publish=publish or self._remember, sleep=no_sleep),
            activation=activation,
        )

    def _remember(self, record: CampaignRecord) -> None:
        self.published.append((record.state, record.detail))

    def versions(self) -> set[str]:
        return {self.ecus[s].running for s in ("ADAS-1", "BODY-1", "BCM-1")}


@pytest.fixture
def vehicle(tmp_path: Path) -> Vehicle:
    return Vehicle(tmp_path)


def run(coro: Any) -> Any:
    async def with_pending_tasks() -> Any:
        result = await coro
        await asyncio.sleep(0.01)  # let fire-and-forget events and the final manifest go
        return result

    return asyncio.run(with_pending_tasks())


def test_transition_table_names_every_state_and_refuses_the_rest() -> None:
    assert set(NEXT) == set(CampaignState)
    require(S.VERIFYING, S.COMMITTING)
    with pytest.raises(IllegalTransition, match="committing -> rolling-back not allowed"):
        require(S.COMMITTING, S.ROLLING_BACK)


def test_happy_path_updates_every_ecu_and_reports(vehicle: Vehicle) -> None:
    engine = vehicle.engine()
    assert run(engine.check()) is True
    assert engine.state is S.DONE
    assert vehicle.versions() == {"adas-v2", "body-v2", "bcm-v2"}
    states = [state for state, _ in vehicle.published]
    for expected in (S.SYNCING, S.DOWNLOADING, S.AWAITING, S.TRANSFERRING, S.COMMITTING):
        assert expected in states
    report = engine.record.last_report
    assert report is not None and report["outcome"] == "updated"
    assert {row["old"] for row in report["ecus"]} == {"v1"}
    assert all(row["bytes_downloaded"] == 1000 for row in report["ecus"])
    assert vehicle.cloud is not None
    kinds = [k for k, _ in vehicle.cloud.events]
    assert {"download_started", "install_started", "campaign_report"} <= set(kinds)
    assert vehicle.cloud.manifests == 3  # first contact, before verification, the final one


def test_the_same_campaign_is_not_run_twice(vehicle: Vehicle) -> None:
    engine = vehicle.engine()
    run(engine.check())
    assert run(engine.check()) is False


@pytest.mark.parametrize("step", ["install", "activate"])
def test_one_ecu_failing_rolls_every_ecu_back(vehicle: Vehicle, step: str) -> None:
    vehicle.ecus["BCM-1"].fail = step if step == "install" else ""
    vehicle.ecus["BODY-1"].fail = step if step == "activate" else ""
    engine = vehicle.engine()
    run(engine.check())
    assert engine.state is S.FAILED
    assert vehicle.versions() == {"v1"}
    assert all(not e.written for e in vehicle.ecus.values())
    report = engine.record.last_report
    assert report is not None and report["outcome"] == "rolled-back"
    assert "NRC 0x22" in report["detail"] or "HEALTH_CHECK_FAILED" in report["detail"]
    assert "\n" not in report["detail"]
    assert vehicle.cloud is not None
    assert "rolled_back" in [k for k, _ in vehicle.cloud.events]


@pytest.mark.parametrize("where", ["verify", "fetch"])
def test_refusal_before_any_ecu_is_touched(vehicle: Vehicle, where: str) -> None:
    assert vehicle.trust is not None
    vehicle.trust.refuse = where
    engine = vehicle.engine()
    run(engine.check())
    assert engine.state is S.FAILED
    assert all(e.calls == [] for e in vehicle.ecus.values())
    report = engine.record.last_report
    assert report is not None and report["outcome"] == "refused"


def test_campaign_naming_an_unknown_ecu_is_refused(vehicle: Vehicle) -> None:
    assert vehicle.trust is not None
    vehicle.trust.targets = {"ADAS-1": "adas-v2", "GHOST-9": "x"}
    engine = vehicle.engine()
    run(engine.check())
    assert engine.state is S.FAILED
    assert "GHOST-9, which this vehicle lacks" in engine.record.error
    assert all(e.calls == [] for e in vehicle.ecus.values())


def test_campaign_for_the_tbox_itself_is_refused_untouched(vehicle: Vehicle) -> None:
    assert vehicle.trust is not None
    vehicle.trust.targets = {"ADAS-1": "adas-v2", "TBOX-1": "tbox-v2"}
    engine = vehicle.engine()
    run(engine.check())
    assert engine.state is S.FAILED and "TBox itself" in engine.record.error
    assert all(e.calls == [] for e in vehicle.ecus.values())


def test_consent_waits_then_goes_and_a_refusal_touches_nothing(vehicle: Vehicle) -> None:
    vehicle.policy.answers = [
        Verdict(Decision.ALLOW),  # download
        Verdict(Decision.WAIT, "waiting for consent"),
        Verdict(Decision.WAIT, "waiting for consent"),
        Verdict(Decision.ALLOW),  # install
    ]
    engine = vehicle.engine()
    run(engine.check())
    assert engine.state is S.DONE
    assert any("waiting for consent" in detail for _, detail in vehicle.published)

    other = Vehicle(vehicle.tmp / "second")
    (vehicle.tmp / "second").mkdir()
    other.policy.answers = [Verdict(Decision.ALLOW), Verdict(Decision.REFUSE, "user declined")]
    engine = other.engine()
    run(engine.check())
    assert engine.state is S.FAILED and "user declined" in engine.record.error
    assert all(e.calls == [] for e in other.ecus.values())


def test_ecus_on_one_bus_never_flash_together_subs_run_in_parallel(vehicle: Vehicle) -> None:
    active: set[str] = set()
    overlaps: list[set[str]] = []
    for ecu in vehicle.ecus.values():
        original = ecu.install

        async def install(job: EcuJob, progress: ProgressFn, _o: Any = original) -> StepResult:
            active.add(job.serial)
            overlaps.append(set(active))
            await asyncio.sleep(0.01)
            try:
                return await _o(job, progress)  # type: ignore[no-any-return]
            finally:
                active.discard(job.serial)

        ecu.install = install  # type: ignore[method-assign]
    run(vehicle.engine().check())
    assert any({"ADAS-1", "BODY-1"} <= seen for seen in overlaps)


KILL_STATES = [
    S.SYNCING,
    S.DOWNLOADING,
    S.AWAITING,
    S.TRANSFERRING,
    S.PROCESSING,
    S.ACTIVATING,
    S.VERIFYING,
    S.COMMITTING,
    S.ROLLING_BACK,
]


@pytest.mark.parametrize("state", KILL_STATES, ids=[s.value for s in KILL_STATES])
def test_killed_in_every_state_converges_all_new_or_all_old(vehicle: Vehicle, state: S) -> None:
    if state is S.ROLLING_BACK:
        vehicle.ecus["BODY-1"].fail = "activate"

    async def kill_when_journaled() -> None:
        reached = asyncio.Event()

        def publish(record: CampaignRecord) -> None:
            if record.state is state:
                reached.set()

        task = asyncio.create_task(vehicle.engine(publish).check())
        waiter = asyncio.create_task(reached.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        assert reached.is_set(), f"never reached {state.value}"
        task.cancel()  # SIGKILL: the journal holds what was saved before the step
        waiter.cancel()
        await asyncio.gather(task, waiter, return_exceptions=True)

    asyncio.run(kill_when_journaled())
    vehicle.ecus["BODY-1"].fail = ""
    engine = vehicle.engine()
    run(engine.recover())
    assert engine.state in (S.DONE, S.FAILED)
    versions = vehicle.versions()
    if state is S.ROLLING_BACK:
        assert versions == {"v1"}
    else:
        assert versions in ({"v1"}, {"adas-v2", "body-v2", "bcm-v2"}), versions
        if state is S.COMMITTING:
            assert engine.state is S.DONE
    assert all(e.committed for e in vehicle.ecus.values())
    assert all(
        row.outcome in (EcuOutcome.UPDATED, EcuOutcome.ROLLED_BACK, EcuOutcome.UNCHANGED)
        for row in engine.record.ecus.values()
    )


def test_reports_name_images_not_delta_files() -> None:
    from redstone_agent.master.record import image_name

    assert image_name("adas-2.0.0.from-20be3d0735c4694d.rsdelta") == "adas-2.0.0"
    assert image_name("adas-2.0.0") == "adas-2.0.0"
    assert image_name("x.from-nothex.rsdelta") == "x.from-nothex.rsdelta"


@pytest.mark.parametrize("activation", ["as-ready", "together"])
def test_activation_as_ready_or_together(vehicle: Vehicle, activation: str) -> None:
    calls: list[str] = []
    slow = vehicle.ecus["BCM-1"]
    original_install = slow.install

    async def slow_install(job: EcuJob, progress: ProgressFn) -> StepResult:
        await asyncio.sleep(0.05)
        calls.append("BCM-1 installed")
        return await original_install(job, progress)

    slow.install = slow_install  # type: ignore[method-assign]
    adas = vehicle.ecus["ADAS-1"]
    original_activate = adas.activate

    async def activate(job: EcuJob) -> StepResult:
        calls.append("ADAS-1 activating")
        return await original_activate(job)

    adas.activate = activate  # type: ignore[method-assign]
    engine = vehicle.engine(activation=activation)
    run(engine.check())
    assert engine.state is S.DONE
    early = calls.index("ADAS-1 activating") < calls.index("BCM-1 installed")
    assert early is (activation == "as-ready"), calls


def test_a_download_cut_by_the_network_waits_for_the_next_poll(vehicle: Vehicle) -> None:
    assert vehicle.trust is not None
    vehicle.trust.refuse = "offline"
    engine = vehicle.engine()
    assert run(engine.check()) is False  # nothing ended: wait for the next poll
    assert engine.state is S.DOWNLOADING
    assert "download paused" in engine.record.detail
    assert all(e.calls == [] for e in vehicle.ecus.values())
    assert run(engine.check()) is True
    assert engine.state is S.DONE and vehicle.trust.fetches == 2
    assert vehicle.versions() == {"adas-v2", "body-v2", "bcm-v2"}
