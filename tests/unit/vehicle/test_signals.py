"""Decoding frames with the shipped DBC; what a bad frame or a bad DBC does."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from redstone_agent.config import ConfigError
from redstone_agent.vehicle.errors import DbcError
from redstone_agent.vehicle.rules import Sample
from redstone_agent.vehicle.signals import (
    EXAMPLE_DBC,
    SignalStore,
    load_dbc,
    signal_index,
    signal_specs,
)

DBC = Path(__file__).resolve().parents[3] / "etc" / "redstone" / "vehicle.dbc"

SIGNALS = {"speed_kph", "gear", "ignition", "battery_v", "soc_pct", "parking_brake"}


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store() -> tuple[SignalStore, Clock]:
    clock = Clock()
    return SignalStore(load_dbc(DBC), source=str(DBC), clock=clock), clock


def frame(name: str, **values: float | str) -> tuple[int, bytes]:
    message = load_dbc(DBC).get_message_by_name(name)
    return message.frame_id, bytes(message.encode(values))


def test_etc_dbc_is_the_example_installed_with_the_package() -> None:
    assert DBC.read_bytes() == EXAMPLE_DBC.read_bytes()


def test_shipped_dbc_has_every_signal_with_a_cycle_time() -> None:
    db = load_dbc(DBC)
    index = signal_index(db)
    assert set(index) == SIGNALS
    for message, _ in index.values():
        assert message.cycle_time is not None and 10 <= message.cycle_time <= 500
    specs = signal_specs(db)
    assert specs["gear"].choices == ("P", "R", "N", "D", "invalid")
    assert specs["ignition"].choices == ("OFF", "ACC", "ON", "START")
    assert specs["parking_brake"].choices == ("released", "engaged", "fault")
    assert (specs["speed_kph"].minimum, specs["speed_kph"].unit) == (0.0, "km/h")
    assert specs["battery_v"].choices == ()


def test_decodes_numbers_and_enum_names_with_the_arrival_time(
    store: tuple[SignalStore, Clock],
) -> None:
    signals, clock = store
    assert signals.feed(*frame("ESP_VehicleSpeed", speed_kph=42.5)) == {"speed_kph": None}
    clock.now = 51.0
    signals.feed(*frame("TCU_Gear", gear="D"))
    assert signals.sample("speed_kph") == Sample(42.5, 50.0)
    assert signals.sample("gear") == Sample("D", 51.0)
    assert type(signals.sample("gear").value) is str  # type: ignore[union-attr]
    assert signals.decoded == 2


def test_feed_returns_the_previous_sample(store: tuple[SignalStore, Clock]) -> None:
    signals, clock = store
    signals.feed(*frame("TCU_Gear", gear="P"))
    clock.now = 50.5
    assert signals.feed(*frame("TCU_Gear", gear="D")) == {"gear": Sample("P", 50.0)}


@pytest.mark.parametrize("volts", [12.19, 12.2, 12.21, 0.35, 40.95])
def test_scaled_values_are_exact_at_the_dbc_resolution(
    store: tuple[SignalStore, Clock], volts: float
) -> None:
    # 1220 * 0.01 is 12.200000000000001 in binary: `battery_v <= 12.2` must still hold.
    signals, _ = store
    signals.feed(*frame("BCM_LvBattery", battery_v=volts))
    assert signals.sample("battery_v") == Sample(volts, 50.0)


def test_unknown_id_is_ignored_and_not_counted(store: tuple[SignalStore, Clock]) -> None:
    signals, _ = store
    assert signals.feed(0x7FF, bytes(8)) == {}
    assert signals.feed(0xF1, bytes(8), extended=True) == {}  # same id, other id space
    assert not signals.malformed
    assert signals.samples == {}


def test_malformed_frame_is_counted_logged_once_and_not_fatal(
    store: tuple[SignalStore, Clock], caplog: pytest.LogCaptureFixture
) -> None:
    signals, _ = store
    gear_id, good = frame("TCU_Gear", gear="P")
    with caplog.at_level(logging.WARNING, logger="redstone_agent.vehicle.signals"):
        for _ in range(3):
            assert signals.feed(gear_id, good[:-1]) == {}
        assert signals.feed(gear_id, good + b"\0") == {}
    assert signals.malformed[gear_id] == 4
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "frame 0x1F5 (TCU_Gear)" in warnings[0] and "7 bytes, the DBC says 8" in warnings[0]
    assert signals.sample("gear") is None
    # The next good frame decodes as if nothing happened.
    signals.feed(gear_id, good)
    assert signals.sample("gear") == Sample("P", 50.0)


def test_raw_value_outside_the_value_table_stays_a_number(
    store: tuple[SignalStore, Clock],
) -> None:
    signals, _ = store
    signals.feed(0x1F5, bytes([7]) + bytes(7))
    assert signals.sample("gear") == Sample(7, 50.0)


def test_missing_dbc_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(DbcError) as caught:
        load_dbc(tmp_path / "vehicle.dbc")
    assert str(caught.value) == f"{tmp_path / 'vehicle.dbc'}: DBC file not found"
    assert isinstance(caught.value, ConfigError)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"this is not a DBC\n", "not a valid DBC file (DBC: "),
        (b"", "not a valid DBC file"),
        (b"\x00\xff\xfe\x01", "not a valid DBC file"),
        (b'VERSION ""\n\nNS_ :\n\nBS_:\n\nBU_:\n', "defines no CAN messages"),
    ],
)
def test_unparsable_dbc_is_one_line_naming_the_file(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    path = tmp_path / "broken.dbc"
    path.write_bytes(content)
    with pytest.raises(DbcError) as caught:
        load_dbc(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert problem in message
    assert "\n" not in message


def test_a_directory_is_not_a_dbc(tmp_path: Path) -> None:
    with pytest.raises(DbcError, match="is a directory"):
        load_dbc(tmp_path)
