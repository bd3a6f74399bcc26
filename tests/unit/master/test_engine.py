"""The campaign engine driven through its ports: happy path, every failure, a kill in every state.

The ECUs here are small state machines standing in for real ECUs (the
engine is the unit under test; the real ports have their own integration
tests). They keep their state across an engine "kill" — the task is
cancelled right after a transition was journaled, and a new engine recovers
from the same journal files, as a restarted Master would.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from redstone_agent.master.ports import (
    Decision,
    EcuJob,
    Gate,
    ProgressFn,
    StepResult,
    Verdict,
)
from redstone_agent.master.record import CampaignRecord, EcuOutcome
from redstone_agent.master.states import NEXT, CampaignState, IllegalTransition, require
from tests.unit.master.fakes import Vehicle, run

S = CampaignState


@pytest.fixture
def vehicle(tmp_path: Path) -> Vehicle:
    return Vehicle(tmp_path)


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
    vehicle.policy.answers = {
        Gate.INSTALL: [
            Verdict(Decision.WAIT, "waiting for consent"),
            Verdict(Decision.WAIT, "waiting for consent"),
            Verdict(Decision.ALLOW),
        ]
    }
    engine = vehicle.engine()
    run(engine.check())
    assert engine.state is S.DONE
    assert any("waiting for consent" in detail for _, detail in vehicle.published)

    other = Vehicle(vehicle.tmp / "second")
    (vehicle.tmp / "second").mkdir()
    other.policy.answers = {Gate.INSTALL: [Verdict(Decision.REFUSE, "user declined")]}
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


def test_a_sub_that_fell_back_while_the_master_was_down_rolls_the_campaign_back(
    vehicle: Vehicle,
) -> None:
    # The Master shares the Sub's board (or was restarted): it is gone while the Sub
    # reboots into its trial, and the bootloader falls back. Found in the QEMU guest,
    # where the restarted Master installed the same image again and rebooted the board
    # into a second failing trial.
    adas = vehicle.ecus["ADAS-1"]
    switched = asyncio.Event()

    async def activate_and_reboot(job: EcuJob) -> StepResult:
        adas.calls.append("activate")
        adas.running, adas.written, adas.committed = job.new.target, "v1", False
        switched.set()
        await asyncio.sleep(3600)  # the board reboots under this Master
        raise AssertionError("unreachable")

    adas.activate = activate_and_reboot  # type: ignore[method-assign]

    async def until_the_reboot() -> None:
        task = asyncio.create_task(vehicle.engine().check())
        await switched.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(until_the_reboot())
    adas.running, adas.written, adas.committed = "v1", "", True  # U-Boot fell back
    del adas.activate
    engine = vehicle.engine()
    run(engine.recover())

    assert engine.state is S.FAILED
    assert vehicle.versions() == {"v1"}
    assert adas.calls.count("install") == 1, adas.calls
    assert "ADAS-1: fell back to its old image after the trial boot of adas-v2" in (
        engine.record.error
    ), engine.record.error


def test_a_master_restarted_on_the_failing_trial_boot_still_knows_the_sub_switched(
    vehicle: Vehicle,
) -> None:
    # The Master shares the board: it runs again on the trial boot (re-journaling the
    # Sub's steps), the board reboots once more and falls back. Still all-old.
    adas = vehicle.ecus["ADAS-1"]
    rebooted: list[asyncio.Event] = []

    async def reboot_on_activate(job: EcuJob) -> StepResult:
        adas.calls.append("activate")
        if adas.written == job.new.target:
            adas.running, adas.written, adas.committed = job.new.target, "v1", False
        rebooted[0].set()
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    adas.activate = reboot_on_activate  # type: ignore[method-assign]

    async def until_reboot() -> None:
        rebooted[:] = [asyncio.Event()]
        task = asyncio.create_task(vehicle.engine().recover())
        await rebooted[0].wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def first_run() -> None:
        rebooted[:] = [asyncio.Event()]
        task = asyncio.create_task(vehicle.engine().check())
        await rebooted[0].wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(first_run())
    asyncio.run(until_reboot())  # the trial boot: the Sub's health check is failing
    adas.running, adas.written, adas.committed = "v1", "", True  # U-Boot fell back
    del adas.activate
    engine = vehicle.engine()
    run(engine.recover())

    assert engine.state is S.FAILED
    assert vehicle.versions() == {"v1"}
    assert adas.calls.count("install") == 2, adas.calls  # the first, and the trial's no-op
    assert "fell back to its old image" in engine.record.error, engine.record.error
