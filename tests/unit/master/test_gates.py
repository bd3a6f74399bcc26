"""Consent, vehicle-state rules and operator commands, through the real policy and engine.

``VehiclePolicy``, ``ConsentStore``, ``Gatekeeper`` and ``Engine`` are the
units under test; the CAN provider is replaced by a :class:`Signals` double
whose rules the test breaks and restores (the real provider has its own tests
in tests/unit/vehicle and tests/integration/vehicle).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from redstone_agent.master.control import ControlError
from redstone_agent.master.engine import Engine
from redstone_agent.master.policy import ConsentStore, VehiclePolicy
from redstone_agent.master.ports import EcuJob, ProgressFn, StepResult
from redstone_agent.master.record import EcuOutcome
from redstone_agent.master.states import CampaignState
from tests.unit.master.fakes import ESP, SPECS, Vehicle

S = CampaignState


@dataclass(frozen=True)
class Blocked:
    reason: str


class Signals:
    """The CAN provider's interface: rules hold until ``break_rule``."""

    def __init__(self) -> None:
        self.broken: dict[str, str] = {}
        self.changed = asyncio.Event()

    def blockers(self, gate: str) -> list[Blocked]:
        self.changed.clear()  # wait_change: a change since this look
        return [Blocked(r) for g, r in self.broken.items() if g == gate]

    def break_rule(self, gate: str, reason: str) -> None:
        self.broken[gate] = reason
        self.changed.set()

    def restore(self) -> None:
        self.broken.clear()
        self.changed.set()

    async def wait_change(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.changed.wait(), timeout_s)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Car:
    vehicle: Vehicle
    store: ConsentStore
    signals: Signals
    clock: Clock

    def engine(self, **options: Any) -> Engine:
        return self.vehicle.engine(**options)

    def events(self) -> list[str]:
        assert self.vehicle.cloud is not None
        return [kind for kind, _ in self.vehicle.cloud.events]


def car(tmp: Path, mode: str = "auto", specs: list[Any] | None = None) -> Car:
    vehicle = Vehicle(tmp, specs=specs or list(SPECS))
    clock = Clock()
    store = ConsentStore(tmp / "consent", now=clock)
    signals = Signals()
    vehicle.policy = VehiclePolicy(mode, store, signals, now=clock)
    return Car(vehicle, store, signals, clock)


async def until(what: str, probe: Callable[[], bool], steps: int = 2000) -> None:
    for _ in range(steps):
        if probe():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"never happened: {what}")


def hold_install(vehicle: Vehicle, serial: str) -> tuple[asyncio.Event, asyncio.Event, list[str]]:
    """Make ``serial``'s install wait for ``go``; ``started`` is set when it begins."""
    started, go, log = asyncio.Event(), asyncio.Event(), []
    ecu = vehicle.ecus[serial]
    original = ecu.install

    async def install(job: EcuJob, progress: ProgressFn) -> StepResult:
        log.append("start")
        started.set()
        try:
            await go.wait()
        except asyncio.CancelledError:
            log.append("stopped")
            raise
        log.append("finish")
        return await original(job, progress)

    ecu.install = install  # type: ignore[method-assign]
    return started, go, log


def drive(body: Callable[[], Awaitable[None]]) -> None:
    async def main() -> None:
        await body()
        await asyncio.sleep(0.01)

    asyncio.run(main())


def test_a_rule_breaking_mid_flash_lets_the_flash_finish_and_postpones_the_rest(
    tmp_path: Path,
) -> None:
    c = car(tmp_path, specs=[*SPECS, ESP])
    engine = c.engine(activation="together")

    async def body() -> None:
        started, go, log = hold_install(c.vehicle, "BCM-1")
        task = asyncio.create_task(engine.check())
        await started.wait()
        c.signals.break_rule("flash", "speed_kph <= 0 fails: speed_kph = 37.0")
        c.signals.break_rule("activate", "speed_kph <= 0 fails: speed_kph = 37.0")
        await asyncio.sleep(0.01)
        go.set()  # BCM-1 finishes its flash although the car now drives
        await until("ESP-1 waits", lambda: engine.record.ecus["ESP-1"].step == "waiting")
        assert log == ["start", "finish"]
        assert engine.record.blocked_by == "speed_kph <= 0 fails: speed_kph = 37.0"
        assert "install" not in c.vehicle.ecus["ESP-1"].calls
        assert engine.state is S.TRANSFERRING
        c.signals.restore()  # parked again: the campaign resumes by itself
        await task
        assert engine.state is S.DONE and engine.record.blocked_by == ""
        assert c.events().count("precondition_blocked") >= 1

    drive(body)


def test_abort_mode_stops_the_running_flash_and_flashes_again_when_parked(
    tmp_path: Path,
) -> None:
    c = car(tmp_path)
    engine = c.engine(interrupt=True)

    async def body() -> None:
        started, go, log = hold_install(c.vehicle, "BCM-1")
        task = asyncio.create_task(engine.check())
        await started.wait()
        c.signals.break_rule("flash", "gear in [P] fails: gear = D")
        await until("BCM-1 stopped", lambda: "stopped" in log)
        await until("BCM-1 waits", lambda: engine.record.ecus["BCM-1"].step == "waiting")
        assert engine.record.blocked_by == "gear in [P] fails: gear = D"
        go.set()
        c.signals.restore()
        await task
        assert log == ["start", "stopped", "start", "finish"]
        assert engine.state is S.DONE

    drive(body)


def test_a_rollback_waits_for_the_rules_but_never_for_consent(tmp_path: Path) -> None:
    c = car(tmp_path, mode="ask")
    c.vehicle.ecus["ADAS-1"].fail = "activate"
    engine = c.engine(activation="together")

    async def body() -> None:
        c.store.answer("spring", "accept")
        started, go, _ = hold_install(c.vehicle, "BCM-1")
        task = asyncio.create_task(engine.check())
        await started.wait()
        go.set()
        await until("rolling back", lambda: engine.state is S.ROLLING_BACK)
        c.signals.break_rule("flash", "battery_v >= 12.2 fails: battery_v = 11.8")
        c.store.answer("spring", "decline")  # a consent answer never stops a rollback
        await asyncio.sleep(0.02)
        c.signals.restore()
        await task
        assert engine.state is S.FAILED
        assert engine.record.ecus["BCM-1"].outcome is EcuOutcome.ROLLED_BACK

    drive(body)


def test_consent_asked_then_accepted(tmp_path: Path) -> None:
    c = car(tmp_path, mode="ask")
    engine = c.engine()

    async def body() -> None:
        task = asyncio.create_task(engine.check())
        await until("asked", lambda: engine.record.consent == "asked")
        assert engine.state is S.AWAITING
        assert "consent" in engine.record.blocked_by
        assert all(e.calls == [] for e in c.vehicle.ecus.values())
        c.store.answer("spring", "accept")
        await task
        assert engine.state is S.DONE
        assert c.events().count("consent_requested") == 1
        assert c.events().count("consent_given") == 1

    drive(body)


def test_consent_declined_touches_nothing(tmp_path: Path) -> None:
    c = car(tmp_path, mode="ask")
    engine = c.engine()

    async def body() -> None:
        task = asyncio.create_task(engine.check())
        await until("asked", lambda: engine.record.consent == "asked")
        c.store.answer("spring", "decline")
        await task
        assert engine.state is S.FAILED and "declined" in engine.record.error
        assert all(e.calls == [] for e in c.vehicle.ecus.values())
        assert "consent_denied" in c.events()

    drive(body)


def test_a_postponement_expires_and_the_driver_is_asked_again(tmp_path: Path) -> None:
    c = car(tmp_path, mode="ask")
    engine = c.engine()

    async def body() -> None:
        task = asyncio.create_task(engine.check())
        await until("asked", lambda: engine.record.consent == "asked")
        c.store.answer("spring", "postpone", 600)
        await until("postponed", lambda: engine.record.consent == "postponed")
        assert "postponed by the driver" in engine.record.blocked_by
        assert "600 s left" in engine.record.blocked_by
        c.clock.now += 601  # the postponement is over
        c.store.changes.bump()
        await until("asked again", lambda: engine.record.consent == "asked")
        assert c.events().count("consent_requested") == 2
        assert c.events().count("consent_postponed") == 1
        c.store.answer("spring", "accept")
        await task
        assert engine.state is S.DONE

    drive(body)


def test_ask_before_activation_installs_subs_then_waits(tmp_path: Path) -> None:
    c = car(tmp_path, mode="ask-before-activation")
    engine = c.engine()

    async def body() -> None:
        task = asyncio.create_task(engine.check())
        await until("asked", lambda: engine.record.consent == "asked")
        await until(
            "subs installed",
            lambda: all(c.vehicle.ecus[s].written.endswith("-v2") for s in ("ADAS-1", "BODY-1")),
        )
        assert engine.state is S.TRANSFERRING
        assert "install" not in c.vehicle.ecus["BCM-1"].calls  # a flash waits for consent
        assert "activate" not in c.vehicle.ecus["ADAS-1"].calls  # so does a reboot
        c.store.answer("spring", "accept")
        await task
        assert engine.state is S.DONE

    drive(body)


def test_cancel_before_any_ecu_is_touched_fails_untouched(tmp_path: Path) -> None:
    c = car(tmp_path, mode="ask")
    engine = c.engine()

    async def body() -> None:
        task = asyncio.create_task(engine.check())
        await until("asked", lambda: engine.record.consent == "asked")
        with pytest.raises(ControlError) as refused:
            await engine.rollback()
        assert refused.value.code == "NotTouched"
        await engine.cancel()
        await task
        assert engine.state is S.FAILED and "cancelled by the user" in engine.record.error
        assert all(e.calls == [] for e in c.vehicle.ecus.values())
        with pytest.raises(ControlError) as again:
            await engine.cancel()
        assert again.value.code == "NoCampaign"

    drive(body)


def test_rollback_command_mid_flash_returns_every_ecu(tmp_path: Path) -> None:
    c = car(tmp_path)
    engine = c.engine()

    async def body() -> None:
        started, _go, log = hold_install(c.vehicle, "BCM-1")
        task = asyncio.create_task(engine.check())
        await started.wait()
        await engine.rollback()
        await task
        assert "stopped" in log  # the flash was stopped, not waited for
        assert engine.state is S.FAILED and "rollback requested" in engine.record.error
        assert c.vehicle.versions() == {"v1"}

    drive(body)


def test_cancel_past_the_commit_point_is_refused(tmp_path: Path) -> None:
    c = car(tmp_path)
    engine = c.engine()

    async def body() -> None:
        ecu = c.vehicle.ecus["ADAS-1"]
        go = asyncio.Event()
        original = ecu.commit

        async def slow_commit(job: EcuJob) -> StepResult:
            await go.wait()
            return await original(job)

        ecu.commit = slow_commit  # type: ignore[method-assign]
        task = asyncio.create_task(engine.check())
        await until("committing", lambda: engine.state is S.COMMITTING)
        with pytest.raises(ControlError) as refused:
            await engine.cancel()
        assert refused.value.code == "PastCommitPoint"
        go.set()
        await task
        assert engine.state is S.DONE

    drive(body)


def test_download_rules_hold_the_download(tmp_path: Path) -> None:
    c = car(tmp_path)
    c.signals.break_rule("download", "soc_pct >= 30 fails: soc_pct = 12")
    engine = c.engine()

    async def body() -> None:
        task = asyncio.create_task(engine.check())
        await until("waiting", lambda: engine.record.blocked_by != "")
        assert engine.state is S.DOWNLOADING
        assert c.vehicle.trust is not None and c.vehicle.trust.fetches == 0
        c.signals.restore()
        await task
        assert engine.state is S.DONE

    drive(body)
