"""The TBox updates its own rootfs last, survives its own reboot, and ends all-new or all-old.

Real slots (file-backed, real U-Boot env through fw_setenv), the real
``SelfPort`` and engine; the other ECU (ADAS-1) is a fake A/B ECU that keeps
its state across "reboots" of the TBox. A reboot drops the engine, lets the
bootloader choose (``VirtualNode.reboot``) and starts a fresh engine on the
same journals (``tests/unit/master/tbox_bench.py``). Truth is read from the
slots and the ECU, not only from the report.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from redstone_agent.delta.make import make_delta
from redstone_agent.master.engine import Engine
from redstone_agent.master.ports import (
    Decision,
    DeltaImage,
    Gate,
    Image,
    OfferedCampaign,
    Verdict,
)
from redstone_agent.master.record import CampaignRecord
from redstone_agent.master.states import SETTLED, CampaignState
from redstone_agent.slots import NodeState
from tests.unit.master.tbox_bench import (
    BOOT,
    TBOX,
    TBoxBench,
    TBoxTrust,
    make_tbox_bench,
    run_until_settled_or_reboot,
)

S = CampaignState


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def bench(tmp_path: Path) -> TBoxBench:
    return make_tbox_bench(tmp_path)


def start(bench: TBoxBench, **options: Any) -> Engine:
    """The old Master runs the campaign until it asks for the TBox's reboot."""
    engine = bench.engine(**options)
    run_until_settled_or_reboot(engine, engine.check())
    return engine


def restart(bench: TBoxBench) -> Engine:
    """A fresh Master process on the same journals: it recovers."""
    engine = bench.engine()
    run_until_settled_or_reboot(engine, engine.recover())
    return engine


def converge(bench: TBoxBench, *, panic: bool = False) -> Engine:
    """Restart the Master, power-cycling the TBox whenever a Master asked for it,
    until the campaign is settled (a bench that stops rebooting and is not settled fails)."""
    for _ in range(6):
        asked = bench.reboots
        engine = restart(bench)
        if engine.state in SETTLED:
            return engine
        assert bench.reboots > asked, f"stuck in {engine.state.value}: {engine.record.detail}"
        bench.power_cycle(panic=panic)
    raise AssertionError("the campaign never settled")


def assert_all_new(bench: TBoxBench, engine: Engine) -> None:
    adas = bench.vehicle.ecus["ADAS-1"]
    assert (adas.running, adas.committed) == ("adas-v2", True)
    status = bench.slots().status()
    assert (status.booted, status.state) == ("B", NodeState.IDLE)
    assert status.slots[1].committed
    assert engine.state is S.DONE
    report = engine.record.last_report
    assert report is not None and report["outcome"] == "updated", report
    installed = (bench.state_dir / "tbox-installed.json").read_text()
    assert '"target": "tbox-v2"' in installed


def assert_all_old(bench: TBoxBench, engine: Engine, reason: str) -> None:
    adas = bench.vehicle.ecus["ADAS-1"]
    assert (adas.running, adas.committed) == ("v1", True)
    status = bench.slots().status()
    assert status.booted == "A" and status.state is NodeState.IDLE, status
    assert status.primary == "A" and not status.slots[1].committed
    assert engine.state is S.FAILED
    report = engine.record.last_report
    assert report is not None and report["outcome"] == "rolled-back", report
    assert reason in report["detail"], report["detail"]
    rows = {row["serial"]: row["outcome"] for row in report["ecus"]}
    assert rows == {"ADAS-1": "rolled-back", TBOX: "rolled-back"}, rows
    assert not (bench.state_dir / "tbox-installed.json").exists()


@pytest.mark.parametrize("activation", ["as-ready", "together"])
def test_good_update_commits_the_tbox_and_the_campaign_after_its_own_reboot(
    bench: TBoxBench, activation: str
) -> None:
    engine = start(bench, activation=activation)
    assert (engine.state, bench.reboots) == (S.TBOX_TRIAL, 1)
    assert bench.slots().status().state is NodeState.INSTALLED  # primed, still on A
    assert bench.journaled()["ecus"][TBOX]["step"] == "rebooting"
    # Last: the TBox was written only once the other ECU ran its new image on trial.
    first = next(steps for _, steps in bench.published if steps.get(TBOX) == "installing")
    assert first["ADAS-1"] == "trial"

    assert bench.power_cycle() == "B"
    engine = restart(bench)
    assert_all_new(bench, engine)
    assert bench.reboots == 1


def test_health_check_fails_old_slot_returns_and_the_vehicle_rolls_back_with_the_reason(
    bench: TBoxBench,
) -> None:
    start(bench)
    bench.health = "redstone-app.service did not start"
    assert bench.power_cycle() == "B"
    new = restart(bench)
    assert new.state is S.TBOX_TRIAL and bench.reboots == 2  # rejected, rebooting back
    saved = bench.journaled()
    assert "failed its health check" in saved["error"]
    assert saved["ecus"][TBOX]["step"] == "rejected"
    assert bench.vehicle.ecus["ADAS-1"].running == "adas-v2"  # the new Master leaves it

    assert bench.power_cycle() == "A"
    old = restart(bench)
    assert_all_old(bench, old, "redstone-app.service did not start")


def test_bootloader_fell_back_from_a_panicking_image_and_the_vehicle_rolls_back(
    bench: TBoxBench,
) -> None:
    start(bench)
    assert bench.power_cycle(panic=True) == "A"  # no Master ever ran on B
    old = restart(bench)
    assert_all_old(bench, old, "failed its trial boot")


def test_a_tbox_only_reboot_that_fails_to_start_is_asked_again_at_the_next_poll(
    bench: TBoxBench,
) -> None:
    bench.fail_reboot = "systemctl: Failed to connect to bus"
    engine = start(bench)
    assert engine.state is S.TBOX_TRIAL and "reboot into the new TBox slot failed" in (
        engine.record.detail
    )
    bench.fail_reboot = ""
    run_until_settled_or_reboot(engine, engine.check())
    assert bench.reboots == 1
    bench.power_cycle()
    assert_all_new(bench, restart(bench))


def test_refused_tbox_reboot_discards_its_primed_slot_and_rolls_back(bench: TBoxBench) -> None:
    refuse = {"on": False}

    class RefusingPolicy:
        async def check(self, gate: Gate, campaign: str, consent_required: bool) -> Verdict:
            if gate is Gate.ACTIVATE and refuse["on"]:
                return Verdict(Decision.REFUSE, "cancelled by the user")
            return Verdict(Decision.ALLOW)

        async def wait_change(self, timeout_s: float) -> None:
            await asyncio.sleep(0)

    bench.vehicle.policy = RefusingPolicy()

    def publish(record: CampaignRecord) -> None:
        refuse["on"] = refuse["on"] or record.state is S.TBOX_TRIAL

    engine = bench.engine(publish)
    run_until_settled_or_reboot(engine, engine.check())
    assert bench.reboots == 0
    assert_all_old(bench, engine, "cancelled by the user")


def test_without_master_self_a_campaign_for_the_tbox_is_refused_untouched(
    bench: TBoxBench,
) -> None:
    engine = bench.engine(self_update=None)
    run_until_settled_or_reboot(engine, engine.check())
    assert engine.state is S.FAILED and "[master.self]" in engine.record.error
    assert bench.vehicle.ecus["ADAS-1"].calls == []
    assert bench.slots().status().state is NodeState.IDLE


# -- a Master killed at every step of its own update -------------------------------------


def _at_state(state: S) -> Callable[[CampaignRecord], bool]:
    return lambda record: record.state is state


def _at_step(step: str) -> Callable[[CampaignRecord], bool]:
    return lambda record: TBOX in record.ecus and record.ecus[TBOX].step == step


def kill_when(bench: TBoxBench, entry: str, when: Callable[[CampaignRecord], bool]) -> None:
    """Start a Master (``entry``: its first poll ``check`` or a restart's ``recover``) and
    SIGKILL it (cancel) right after a record matching ``when`` was journaled: the next
    Master sees exactly what was saved before the step ran."""

    async def go() -> None:
        reached = asyncio.Event()

        def publish(record: CampaignRecord) -> None:
            bench.published.append((record.state.value, {}))
            if when(record):
                reached.set()

        engine = bench.engine(publish)
        task = asyncio.ensure_future(getattr(engine, entry)())
        waiter = asyncio.ensure_future(reached.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        assert reached.is_set(), "never reached the kill point"
        task.cancel()
        waiter.cancel()
        await asyncio.gather(task, waiter, return_exceptions=True)

    asyncio.run(go())


KILLS_BEFORE_THE_REBOOT = {
    "before-the-slot-switch": _at_state(S.UPDATING_TBOX),
    "after-the-slot-switch": _at_step("installed"),
    "before-the-reboot": _at_state(S.TBOX_TRIAL),
}


@pytest.mark.parametrize("point", list(KILLS_BEFORE_THE_REBOOT))
def test_old_master_killed_before_its_reboot_converges_all_new(
    bench: TBoxBench, point: str
) -> None:
    kill_when(bench, "check", KILLS_BEFORE_THE_REBOOT[point])
    assert bench.reboots == 0
    assert_all_new(bench, converge(bench))


def test_old_master_restarted_after_asking_for_the_reboot_asks_again(bench: TBoxBench) -> None:
    start(bench)  # asked; the system went down before rebooting, the Master restarted
    engine = restart(bench)
    assert (engine.state, bench.reboots) == (S.TBOX_TRIAL, 2)
    bench.power_cycle()
    assert_all_new(bench, restart(bench))


def test_new_master_killed_after_the_reboot_before_its_health_check_converges(
    bench: TBoxBench,
) -> None:
    start(bench)
    bench.power_cycle()
    kill_when(bench, "recover", _at_step("checking"))
    assert bench.booted() == "B" and bench.slots().status().state is NodeState.TRYING
    assert_all_new(bench, converge(bench))


def test_new_master_killed_while_committing_finishes_forward(bench: TBoxBench) -> None:
    start(bench)
    bench.power_cycle()
    kill_when(bench, "recover", _at_state(S.COMMITTING))
    assert bench.journaled()["state"] == "committing"
    assert_all_new(bench, converge(bench))


def test_new_master_killed_between_rejecting_and_marking_its_slot_bad_rejects_again(
    bench: TBoxBench,
) -> None:
    start(bench)
    bench.health = "cloud: connection refused"
    bench.power_cycle()
    kill_when(bench, "recover", _at_step("rejected"))
    assert bench.booted() == "B"
    assert_all_old(bench, converge(bench), "cloud: connection refused")


def test_old_master_killed_while_rolling_back_after_the_fallback_finishes_all_old(
    bench: TBoxBench,
) -> None:
    start(bench)
    bench.power_cycle(panic=True)
    kill_when(bench, "recover", _at_state(S.ROLLING_BACK))
    assert bench.journaled()["state"] == "rolling-back"
    assert_all_old(bench, converge(bench), "failed its trial boot")


def test_power_cut_after_the_slot_switch_boots_the_new_slot_early_and_still_commits(
    bench: TBoxBench,
) -> None:
    kill_when(bench, "check", _at_step("installed"))
    assert bench.power_cycle() == "B"  # primed: a power cut is a (premature) trial boot
    assert_all_new(bench, converge(bench))


TBOX_CAMPAIGN_STATES = [
    s for s in S if s not in SETTLED and s not in (S.COMMITTING, S.ROLLING_BACK)
]
"""What the old Master passes through before its reboot (committing: the new Master's,
killed above; rolling-back: only after a failure, killed above)."""


@pytest.mark.parametrize("state", TBOX_CAMPAIGN_STATES, ids=[s.value for s in TBOX_CAMPAIGN_STATES])
def test_killed_in_every_state_of_a_tbox_campaign_converges_all_new(
    bench: TBoxBench, state: S
) -> None:
    kill_when(bench, "check", _at_state(state))
    assert bench.reboots == 0
    assert_all_new(bench, converge(bench))


# -- with the TBox's boot script in the same campaign -----------------------------------


@pytest.fixture
def booting(tmp_path: Path) -> TBoxBench:
    return make_tbox_bench(tmp_path, bootscript=True)


def test_boot_script_switches_before_the_tbox_reboot_and_commits_with_the_campaign(
    booting: TBoxBench,
) -> None:
    start(booting)
    before = booting.store().status()
    assert before.pending is not None and before.selected == "B"  # switched, not committed
    first = next(steps for _, steps in booting.published if steps.get(TBOX) == "installing")
    assert first[BOOT] == "trial"  # the boot script went first

    booting.power_cycle()
    engine = restart(booting)
    assert_all_new(booting, engine)
    after = booting.store().status()
    assert after.pending is None and after.booting == "B"
    assert after.holds("B", booting.vehicle.trust.real[BOOT].sha256)  # type: ignore[union-attr]


def test_boot_script_is_switched_back_when_the_new_tbox_image_is_bad(
    booting: TBoxBench,
) -> None:
    start(booting)
    booting.health = "redstone-someipyd.service failed"
    booting.power_cycle()
    restart(booting)
    booting.power_cycle()
    engine = restart(booting)
    assert engine.state is S.FAILED
    rows = {row["serial"]: row["outcome"] for row in engine.record.last_report["ecus"]}  # type: ignore[index]
    assert rows[BOOT] == "rolled-back"
    status = booting.store().status()
    assert status.booting == "A" and status.pending is None


def test_a_delta_against_the_running_slot_updates_the_tbox(bench: TBoxBench) -> None:
    start(bench)
    bench.power_cycle()
    assert restart(bench).state is S.DONE  # runs tbox-v2 committed in slot B
    old = bench.image.path
    new = bench.tmp / "tbox-v3.img"
    new.write_bytes(old.read_bytes().replace(b"v2", b"v3", 40))
    delta = bench.tmp / "tbox-v3.from-v2.rsdelta"
    with delta.open("wb") as out:
        make_delta(old, new, out, block_size=4096, jobs=1)
    data, patch = new.read_bytes(), delta.read_bytes()
    image = Image("tbox-v3", sha(data), len(data), "tbox-v3", new, "")
    trust = bench.vehicle.trust
    assert isinstance(trust, TBoxTrust) and bench.vehicle.cloud is not None
    trust.targets = {"ADAS-1": "adas-v3", TBOX: "tbox-v3"}
    trust.real[TBOX] = image
    trust.deltas = {
        TBOX: DeltaImage(delta.name, sha(patch), len(patch), bench.image.sha256, delta, "")
    }
    bench.vehicle.cloud.offer = OfferedCampaign("tbox-autumn", False, dict(trust.targets))

    engine = start(bench)
    assert engine.state is S.TBOX_TRIAL
    installed = bench.slots().journal.load() or {}
    assert (installed["source"], installed["slot"]) == (str(delta), "A")  # applied to A
    assert bench.power_cycle() == "A"
    engine = restart(bench)
    assert engine.state is S.DONE, engine.record.error
    assert bench.slots().images.load()["A"]["sha256"] == image.sha256  # type: ignore[index]
    assert (bench.state_dir / "tbox-installed.json").read_text().count("tbox-v3") == 1
