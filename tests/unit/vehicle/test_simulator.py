"""The CAN signal simulator: scenarios checked against the DBC, frames on a virtual bus."""

from __future__ import annotations

import asyncio
import itertools
import tomllib
from pathlib import Path

import can
import pytest
from cantools.database.can import Message

from redstone_agent.config import ConfigError
from redstone_agent.vehicle.errors import ScenarioError
from redstone_agent.vehicle.signals import load_dbc
from redstone_agent.vehicle.simulator import (
    BUILTIN,
    CanSimulator,
    Scenario,
    Step,
    StepEvent,
    builtin_scenario,
    find_scenario,
    load_scenario,
    parse_scenario,
)

ROOT = Path(__file__).resolve().parents[3]
DBC = ROOT / "etc" / "redstone" / "vehicle.dbc"
SCENARIOS = ROOT / "etc" / "redstone" / "scenarios"
DB = load_dbc(DBC)
DEADLINE_S = 30.0

_channels = itertools.count()


def parse(text: str) -> Scenario:
    return parse_scenario(tomllib.loads(text), DB, source="s.toml", dbc="vehicle.dbc")


# -- scenarios -------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_shipped_scenario_files_are_the_builtins(name: str) -> None:
    path = SCENARIOS / f"{name}.toml"
    assert path.read_text() == BUILTIN[name]
    assert load_scenario(path, DB) == builtin_scenario(name, DB)


def test_park_drive_park_parks_drives_and_parks() -> None:
    steps = builtin_scenario("park-drive-park", DB).steps
    first = steps[0].signals
    assert set(first) == {"speed_kph", "gear", "ignition", "battery_v", "soc_pct", "parking_brake"}
    assert (first["speed_kph"], first["gear"]) == (0, "P")
    assert any(step.signals.get("gear") == "D" for step in steps)
    assert (steps[-1].signals["speed_kph"], steps[-1].signals["gear"]) == (0, "P")


def test_values_hold_until_changed_and_extras_parse() -> None:
    scenario = parse(
        """
        name = "x"
        [[step]]
        duration-s = 1
        signals = { speed_kph = 0, gear = "P" }
        [[step]]
        duration-s = 0.5
        signals = { speed_kph = 12.5 }
        mute = ["battery_v"]
        malformed = ["gear"]
        """
    )
    assert scenario == Scenario(
        "x",
        (
            Step(1.0, {"speed_kph": 0, "gear": "P"}),
            Step(0.5, {"speed_kph": 12.5}, frozenset({"battery_v"}), frozenset({"gear"})),
        ),
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "[[step]]\nduration-s = 1\nsignals = { speedkph = 0 }",
            "s.toml: step[1].signals.speedkph: vehicle.dbc has no signal speedkph (it has: ",
        ),
        (
            "[[step]]\nduration-s = 1\nsignals = { speed_kph = 400 }",
            "s.toml: step[1].signals.speed_kph: 400 is outside speed_kph's range "
            "0..327.67 km/h in vehicle.dbc",
        ),
        (
            "[[step]]\nduration-s = 1\nsignals = { battery_v = -1 }",
            "step[1].signals.battery_v: -1 is outside battery_v's range 0..40.95 V",
        ),
        (
            '[[step]]\nduration-s = 1\nsignals = { gear = "X" }',
            'step[1].signals.gear: "X" is not a value of gear (P R N D invalid)',
        ),
        (
            "[[step]]\nduration-s = 1\nsignals = { gear = 0 }",
            "step[1].signals.gear: 0 is not a value of gear",
        ),
        (
            '[[step]]\nduration-s = 1\nsignals = { speed_kph = "fast" }',
            'step[1].signals.speed_kph: speed_kph is a number, got "fast"',
        ),
        ("[[step]]\nduration-s = 0", "step[1].duration-s: expected seconds > 0, got 0"),
        ("[[step]]\nsignals = {}", "step[1].duration-s: expected seconds > 0, got None"),
        ("name = 'x'", "s.toml: step: no [[step]] tables"),
        ("[[step]]\nduration-s = 1\nspeed = 3", "step[1].speed: unknown key"),
        ("[[step]]\nduration-s = 1\nmute = ['wheel']", "step[1].mute: vehicle.dbc has no signal"),
        ("[[step]]\nduration-s = 1\nmalformed = 'gear'", "step[1].malformed: expected a list"),
        ("[[step]]\nduration-s = 1\n[[steps]]", "s.toml: steps: unknown key"),
    ],
)
def test_bad_scenario_is_one_line_naming_file_and_step(body: str, message: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        parse(body)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, ConfigError)


def test_scenario_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="scenario file not found"):
        load_scenario(tmp_path / "none.toml", DB)
    broken = tmp_path / "broken.toml"
    broken.write_text("[[step]\n")
    with pytest.raises(ScenarioError, match=r"broken\.toml: not valid TOML"):
        load_scenario(broken, DB)


def test_find_scenario_takes_a_file_or_a_builtin_name(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text("[[step]]\nduration-s = 1\nsignals = { gear = 'N' }\n")
    assert find_scenario(str(path), DB).name == "mine"
    assert find_scenario("park-drive-park", DB).name == "park-drive-park"
    with pytest.raises(ScenarioError, match=r"built-ins: park-drive-park, driving-then-parked"):
        find_scenario("no-such-scenario", DB)


# -- sending ---------------------------------------------------------------------


def play(scenario: Scenario, **options: object) -> tuple[list[can.Message], list[StepEvent]]:
    """Run *scenario* on a fresh virtual bus; return every frame sent and every step event."""
    channel = f"cansim-unit-{next(_channels)}"
    tx = can.Bus(interface="virtual", channel=channel)
    rx = can.Bus(interface="virtual", channel=channel)
    events: list[StepEvent] = []
    simulator = CanSimulator(DB, tx, scenario, on_step=events.append, **options)  # type: ignore[arg-type]
    try:
        asyncio.run(asyncio.wait_for(simulator.run(), DEADLINE_S))
        frames = []
        while (msg := rx.recv(0)) is not None:
            frames.append(msg)
    finally:
        tx.shutdown()
        rx.shutdown()
    assert simulator.sent == len(frames)
    return frames, events


def decode(message: Message, frame: can.Message) -> dict[str, float | str]:
    """A frame's signals, enum values as their names."""
    result = message.decode(bytes(frame.data))
    assert isinstance(result, dict)
    return {k: v if isinstance(v, int | float) else str(v) for k, v in result.items()}


def decoded(frames: list[can.Message], name: str) -> list[dict[str, float | str]]:
    message = DB.get_message_by_name(name)
    return [
        decode(message, f)
        for f in frames
        if f.arbitration_id == message.frame_id and len(f.data) == message.length
    ]


def test_sends_held_values_and_leaves_untouched_messages_silent() -> None:
    frames, events = play(
        parse(
            """
            [[step]]
            duration-s = 0.15
            signals = { speed_kph = 0, gear = "P" }
            [[step]]
            duration-s = 0.15
            signals = { speed_kph = 20 }
            """
        )
    )
    speeds = [d["speed_kph"] for d in decoded(frames, "ESP_VehicleSpeed")]
    assert speeds[0] == 0 and speeds[-1] == 20
    assert speeds == sorted(speeds)  # never back to 0 once 20 was sent
    assert {d["gear"] for d in decoded(frames, "TCU_Gear")} == {"P"}  # held
    sent_ids = {f.arbitration_id for f in frames}
    assert sent_ids == {0xF1, 0x1F5}  # no step touched ignition, battery, SoC or brake
    assert [(e.step, e.steps, dict(e.values)) for e in events] == [
        (1, 2, {"speed_kph": 0, "gear": "P"}),
        (2, 2, {"speed_kph": 20, "gear": "P"}),
    ]


def test_a_message_carries_defaults_for_signals_no_step_set() -> None:
    frames, _ = play(parse("[[step]]\nduration-s = 0.05\nsignals = { battery_v = 12.6 }"))
    assert decoded(frames, "BCM_LvBattery")[0] == {"battery_v": 12.6}


def test_malformed_and_mute_last_one_step() -> None:
    frames, events = play(
        parse(
            """
            [[step]]
            duration-s = 0.15
            signals = { gear = "P", battery_v = 12.6 }
            [[step]]
            duration-s = 0.15
            malformed = ["gear"]
            mute = ["battery_v"]
            [[step]]
            duration-s = 0.15
            signals = { gear = "N" }
            """
        )
    )
    gear = [f for f in frames if f.arbitration_id == 0x1F5]
    lengths = [len(f.data) for f in gear]
    # 8-byte frames, then 7-byte ones during step 2, then 8-byte ones again.
    first_short, last_short = lengths.index(7), len(lengths) - 1 - lengths[::-1].index(7)
    assert set(lengths[:first_short]) == {8}
    assert set(lengths[first_short : last_short + 1]) == {7}
    assert set(lengths[last_short + 1 :]) == {8} and lengths[-1] == 8
    assert decode(DB.get_message_by_name("TCU_Gear"), gear[-1])["gear"] == "N"
    # Battery frames stop while muted: none between the first and last short gear frame.
    order = [(f.arbitration_id, len(f.data)) for f in frames]
    window = order[order.index((0x1F5, 7)) : len(order) - order[::-1].index((0x1F5, 7))]
    assert (0x3E8, 8) not in window
    assert (0x3E8, 8) in order[len(order) - order[::-1].index((0x1F5, 7)) :]
    assert (events[1].mute, events[1].malformed) == (("battery_v",), ("gear",))


def test_loop_repeats_until_stopped() -> None:
    scenario = parse("[[step]]\nduration-s = 0.02\nsignals = { gear = 'P' }")
    channel = f"cansim-unit-{next(_channels)}"
    tx = can.Bus(interface="virtual", channel=channel)
    rounds: list[int] = []

    def on_step(event: StepEvent) -> None:
        rounds.append(event.round)
        if event.round == 3:
            simulator.stop()

    simulator = CanSimulator(DB, tx, scenario, loop=True, on_step=on_step)
    try:
        asyncio.run(asyncio.wait_for(simulator.run(), DEADLINE_S))
    finally:
        tx.shutdown()
    assert rounds == [1, 2, 3]


def test_stop_ends_a_long_step() -> None:
    scenario = parse("[[step]]\nduration-s = 3600\nsignals = { gear = 'P' }")
    channel = f"cansim-unit-{next(_channels)}"
    tx = can.Bus(interface="virtual", channel=channel)
    simulator = CanSimulator(DB, tx, scenario, on_step=lambda _: simulator.stop())

    try:
        asyncio.run(asyncio.wait_for(simulator.run(), DEADLINE_S))
    finally:
        tx.shutdown()


def test_step_event_as_json_dict() -> None:
    event = StepEvent("s", 1, 2, 3, 5.0, 1.23456, {"gear": "P"}, (), ("gear",))
    assert event.as_dict() == {
        "event": "step",
        "scenario": "s",
        "round": 1,
        "step": 2,
        "steps": 3,
        "duration_s": 5.0,
        "elapsed_s": 1.235,
        "signals": {"gear": "P"},
        "mute": [],
        "malformed": ["gear"],
    }
