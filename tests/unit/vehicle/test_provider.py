"""CanPreconditions on a python-can ``virtual`` bus in this process."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import can
import pytest

from redstone_agent.vehicle.config import VehicleSettings
from redstone_agent.vehicle.errors import BusError, DbcError, RuleError
from redstone_agent.vehicle.provider import Blocker, CanPreconditions
from redstone_agent.vehicle.signals import load_dbc

DBC = Path(__file__).resolve().parents[3] / "etc" / "redstone" / "vehicle.dbc"
RULES = ["speed_kph <= 0", 'gear in ["P"]', "battery_v >= 12.2"]
DOWNLOAD_RULES = ["soc_pct >= 30"]
DEADLINE_S = 30.0
"""Only a broken implementation gets near this; nothing asserts how long a wait took."""

_channels = itertools.count()


def settings(**changes: object) -> VehicleSettings:
    values: dict[str, object] = {
        "dbc": DBC,
        "interface": "virtual",
        "channel": "unused",
        "rules": RULES,
        "download_rules": DOWNLOAD_RULES,
        "freshness_ms": 1000,
    }
    values.update(changes)
    return VehicleSettings(**values)  # type: ignore[arg-type]


class Car:
    """The sending side of a virtual bus pair: encodes signals with the shipped DBC."""

    def __init__(self, channel: str) -> None:
        self.bus = can.Bus(interface="virtual", channel=channel)
        self.db = load_dbc(DBC)

    def send(self, message: str, **values: float | str) -> None:
        encoded = self.db.get_message_by_name(message)
        self.raw(encoded.frame_id, bytes(encoded.encode(values)))

    def raw(self, frame_id: int, data: bytes) -> None:
        self.bus.send(can.Message(arbitration_id=frame_id, data=data, is_extended_id=False))

    def parked(self, volts: float = 12.6) -> None:
        self.send("ESP_VehicleSpeed", speed_kph=0)
        self.send("TCU_Gear", gear="P")
        self.send("BCM_LvBattery", battery_v=volts)
        self.send("BMS_HvBattery", soc_pct=80)


async def until(
    provider: CanPreconditions, done: Callable[[], bool], what: str, timeout_s: float = 5.0
) -> None:
    """Wait, through wait_change, until *done* holds; fail after the deadline."""

    async def loop() -> None:
        while not done():
            await provider.wait_change(timeout_s)

    try:
        await asyncio.wait_for(loop(), DEADLINE_S)
    except TimeoutError:
        pytest.fail(f"never saw: {what}")


async def settle(provider: CanPreconditions, signal: str, value: object) -> None:
    """Poll until the provider has decoded *signal* = *value* (no wait_change involved)."""

    async def poll() -> None:
        while provider.values().get(signal, (None, 0.0))[0] != value:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), DEADLINE_S)


@contextlib.asynccontextmanager
async def open_pair() -> AsyncIterator[tuple[CanPreconditions, Car]]:
    """A started provider on one end of a fresh virtual bus, a Car on the other."""
    channel = f"vehicle-unit-{next(_channels)}"
    car = Car(channel)
    rx = can.Bus(interface="virtual", channel=channel)
    provider = CanPreconditions(settings(), bus=rx)
    await provider.start()
    try:
        yield provider, car
    finally:
        await provider.close()
        rx.shutdown()
        car.bus.shutdown()


def in_loop(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """Run an async test body on a fresh event loop (the suite has no asyncio plugin)."""

    @functools.wraps(test)
    def run() -> None:
        asyncio.run(test())

    return run


# -- construction: every configuration error before the bus is touched ------------


def test_rule_on_a_signal_the_dbc_lacks_names_rule_and_file() -> None:
    with pytest.raises(RuleError) as caught:
        CanPreconditions(settings(rules=["speed_kph <= 0", "wheel_kph <= 0"]))
    message = str(caught.value)
    assert message.startswith("master.vehicle.rules: 'wheel_kph <= 0': ")
    assert f"{DBC} has no signal wheel_kph" in message


def test_malformed_download_rule_names_its_key() -> None:
    with pytest.raises(
        RuleError, match=r"^master\.vehicle\.download-rules: 'soc_pct >=': not a rule"
    ):
        CanPreconditions(settings(download_rules=["soc_pct >="]))


def test_missing_dbc_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(DbcError, match="DBC file not found"):
        CanPreconditions(settings(dbc=tmp_path / "nope.dbc"))


def test_bus_that_cannot_open_is_one_line() -> None:
    provider = CanPreconditions(settings(interface="no-such-interface", channel="can9"))

    with pytest.raises(BusError, match=r"^cannot open CAN bus no-such-interface:can9: "):
        asyncio.run(provider.start())


# -- gates ----------------------------------------------------------------------


def test_every_rule_fails_before_any_frame() -> None:
    provider = CanPreconditions(settings())
    assert provider.blockers("flash") == [
        Blocker("speed_kph <= 0", "speed_kph", None, "speed_kph is unknown (never received)"),
        Blocker('gear in ["P"]', "gear", None, "gear is unknown (never received)"),
        Blocker("battery_v >= 12.2", "battery_v", None, "battery_v is unknown (never received)"),
    ]
    assert [b.rule for b in provider.blockers("download")] == ["soc_pct >= 30"]
    assert provider.blockers("activate") == provider.blockers("flash")
    assert provider.blockers("restore") == provider.blockers("flash")
    assert provider.blockers("install") == []
    with pytest.raises(ValueError, match="unknown gate 'reboot'"):
        provider.blockers("reboot")


def test_no_rules_means_nothing_blocks() -> None:
    provider = CanPreconditions(settings(rules=[], download_rules=[]))
    assert provider.blockers("flash") == provider.blockers("download") == []


# -- live frames ------------------------------------------------------------------


@in_loop
async def test_parked_car_passes_then_driving_blocks() -> None:
    async with open_pair() as (provider, car):
        car.parked()
        await until(provider, lambda: not provider.blockers("flash"), "all rules hold when parked")
        await until(provider, lambda: not provider.blockers("download"), "download rules hold")
        car.send("ESP_VehicleSpeed", speed_kph=42.5)
        car.send("TCU_Gear", gear="D")
        await until(provider, lambda: len(provider.blockers("flash")) == 2, "driving blocks")
        assert [(b.signal, b.value, b.reason) for b in provider.blockers("flash")] == [
            ("speed_kph", 42.5, "speed_kph <= 0 fails: speed_kph = 42.5"),
            ("gear", "D", 'gear in ["P"] fails: gear = D'),
        ]
        assert provider.blockers("download") == []


@in_loop
async def test_battery_boundary_over_the_wire() -> None:
    async with open_pair() as (provider, car):
        car.parked(volts=12.19)
        await until(provider, lambda: len(provider.blockers("flash")) == 1, "only battery blocks")
        assert provider.blockers("flash")[0].reason == "battery_v >= 12.2 fails: battery_v = 12.19"
        car.send("BCM_LvBattery", battery_v=12.2)
        await until(provider, lambda: not provider.blockers("flash"), "12.2 V is enough")


@in_loop
async def test_wait_change_wakes_when_a_signal_goes_stale() -> None:
    channel = f"vehicle-unit-{next(_channels)}"
    car = Car(channel)
    rx = can.Bus(interface="virtual", channel=channel)
    async with CanPreconditions(settings(freshness_ms=200), bus=rx) as provider:
        car.parked()
        await until(provider, lambda: not provider.blockers("flash"), "parked")
        # Nothing more is sent: only the staleness timer can end this wait in time.
        await asyncio.wait_for(provider.wait_change(3600), DEADLINE_S)
        reasons = [b.reason for b in provider.blockers("flash")]
        assert reasons and all(" is stale (last seen " in r for r in reasons)
        assert all(r.endswith("ms ago, limit 200 ms)") for r in reasons)
        assert all(b.value is None for b in provider.blockers("flash"))
        # The signal comes back: that wakes it too.
        car.parked()
        await until(provider, lambda: not provider.blockers("flash"), "fresh again")
    rx.shutdown()
    car.bus.shutdown()


@in_loop
async def test_wait_change_returns_at_once_if_truth_moved_since_blockers() -> None:
    async with open_pair() as (provider, car):
        assert provider.blockers("flash")  # the caller has seen: blocked
        car.parked()
        await settle(provider, "battery_v", 12.6)
        await settle(provider, "gear", "P")
        await settle(provider, "speed_kph", 0)
        # The change happened before the wait started; it must not be missed.
        await asyncio.wait_for(provider.wait_change(3600), DEADLINE_S)
        assert provider.blockers("flash") == []


@in_loop
async def test_wait_change_returns_after_its_timeout() -> None:
    async with open_pair() as (provider, _):
        provider.blockers("flash")
        await asyncio.wait_for(provider.wait_change(0.05), DEADLINE_S)


@in_loop
async def test_malformed_frame_is_counted_and_decoding_goes_on() -> None:
    async with open_pair() as (provider, car):
        car.raw(0x1F5, b"\x00")  # TCU_Gear, one byte instead of eight
        car.raw(0x7AB, b"\x01\x02")  # an id the DBC does not define
        car.parked()
        await until(provider, lambda: not provider.blockers("flash"), "parked despite a bad frame")
        assert provider.store.malformed == {0x1F5: 1}


@in_loop
async def test_values_for_status() -> None:
    async with open_pair() as (provider, car):
        car.send("BCM_Terminal", ignition="ON")
        await settle(provider, "ignition", "ON")
        value, age = provider.values()["ignition"]
        assert value == "ON" and age >= 0


@in_loop
async def test_close_is_idempotent_and_leaves_a_given_bus_open() -> None:
    channel = f"vehicle-unit-{next(_channels)}"
    car = Car(channel)
    rx = can.Bus(interface="virtual", channel=channel)
    provider = CanPreconditions(settings(), bus=rx)
    await provider.start()
    await provider.close()
    await provider.close()
    car.send("TCU_Gear", gear="P")
    assert rx.recv(5.0) is not None  # still ours to use
    rx.shutdown()
    car.bus.shutdown()


@in_loop
async def test_own_bus_receives_only_the_frames_the_rules_need() -> None:
    channel = f"vehicle-unit-{next(_channels)}"
    car = Car(channel)
    provider = CanPreconditions(
        settings(channel=channel, rules=['gear in ["P"]'], download_rules=[])
    )
    await provider.start()
    try:
        car.send("BCM_Terminal", ignition="ON")  # filtered out: no rule reads it
        car.send("TCU_Gear", gear="P")
        await until(provider, lambda: not provider.blockers("flash"), "gear P")
        assert set(provider.values()) == {"gear"}
    finally:
        await provider.close()
        car.bus.shutdown()
