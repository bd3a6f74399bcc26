"""A CAN signal simulator: the vehicle's ECUs sending their state, from a scenario.

A scenario is a list of steps, each lasting ``duration-s`` and setting some
signals; a value is held until a later step changes it (docs/vehicle.md §6)::

    name = "park-drive-park"
    [[step]]
    duration-s = 5
    signals = { speed_kph = 0, gear = "P", ignition = "ON" }
    [[step]]
    duration-s = 3
    signals = { gear = "D", speed_kph = 30 }
    mute = ["battery_v"]        # this step only: its message is not sent
    malformed = ["gear"]        # this step only: its message is sent one byte short

Every message that carries at least one signal set so far is sent at its DBC
cycle time (``GenMsgCycleTime``, else ``default_cycle_ms``), and at once when a
step changes its bytes (so even a short step reaches the bus); a message no step
has touched stays silent, so its signals stay unknown to a receiver. Signals
of a sent message that no step set go out as their DBC start value (or 0).
Scenarios are checked against the DBC before anything is sent: an unknown
signal, a choice name the enum lacks, or a number outside the signal's range
is a one-line ScenarioError naming the file and the step.
"""

from __future__ import annotations

import asyncio
import logging
import time
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import can
from cantools.database.can import Database, Message, Signal
from cantools.database.errors import Error as CantoolsError

from redstone_agent.aio import wait_event
from redstone_agent.vehicle.errors import ScenarioError
from redstone_agent.vehicle.rules import Scalar, format_value
from redstone_agent.vehicle.signals import choice_names, signal_index

log = logging.getLogger(__name__)

DEFAULT_CYCLE_MS = 100
"""Cycle time of a message whose DBC gives none."""

BUILTIN: dict[str, str] = {
    "park-drive-park": """\
# Parked and ready, driven for a while, parked again: the window an OTA
# campaign waits for. Built into redstone-cansim (--scenario park-drive-park);
# copy this file to write your own (docs/vehicle.md).
name = "park-drive-park"
description = "parked (P, 0 km/h), driving (D, up to 50 km/h), parked again"

[[step]]
duration-s = 5
[step.signals]
ignition = "ON"
gear = "P"
speed_kph = 0
parking_brake = "engaged"
battery_v = 12.6
soc_pct = 80

[[step]]
duration-s = 2
signals = { parking_brake = "released", gear = "D", speed_kph = 8 }

[[step]]
duration-s = 5
signals = { speed_kph = 50, battery_v = 14.1, soc_pct = 79.5 }

[[step]]
duration-s = 2
signals = { speed_kph = 5 }

[[step]]
duration-s = 5
signals = { speed_kph = 0, gear = "P", parking_brake = "engaged", battery_v = 12.6 }
""",
    "driving-then-parked": """\
# The vehicle is already moving when the campaign arrives; it slows down,
# stops and is parked with the ignition in ACC for good. Built into
# redstone-cansim (--scenario driving-then-parked).
name = "driving-then-parked"
description = "driving (D, 80 km/h), braking, parked (P) with ignition ACC"

[[step]]
duration-s = 5
[step.signals]
ignition = "ON"
gear = "D"
speed_kph = 80
parking_brake = "released"
battery_v = 14.2
soc_pct = 64

[[step]]
duration-s = 3
signals = { speed_kph = 20 }

[[step]]
duration-s = 1
signals = { speed_kph = 0 }

[[step]]
duration-s = 10
signals = { gear = "P", parking_brake = "engaged", ignition = "ACC", battery_v = 12.4 }
""",
}
"""Scenarios usable by name, without a file."""


@dataclass(frozen=True)
class Step:
    """One stretch of time and the signals that change at its start."""

    duration_s: float
    signals: Mapping[str, Scalar] = field(default_factory=dict)
    mute: frozenset[str] = frozenset()
    """Signals whose messages are not sent during this step (a silent ECU)."""
    malformed: frozenset[str] = frozenset()
    """Signals whose messages are sent one byte short during this step."""


@dataclass(frozen=True)
class Scenario:
    name: str
    steps: tuple[Step, ...]
    description: str = ""


@dataclass(frozen=True)
class StepEvent:
    """Reported when a step starts: everything a progress line needs."""

    scenario: str
    round: int
    """1 for the first pass; counts up with ``loop``."""
    step: int
    """1-based index of the step that starts."""
    steps: int
    duration_s: float
    elapsed_s: float
    """Seconds since the simulator started."""
    values: Mapping[str, Scalar]
    """Every signal held from this step on."""
    mute: tuple[str, ...] = ()
    malformed: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "event": "step",
            "scenario": self.scenario,
            "round": self.round,
            "step": self.step,
            "steps": self.steps,
            "duration_s": self.duration_s,
            "elapsed_s": round(self.elapsed_s, 3),
            "signals": dict(self.values),
            "mute": list(self.mute),
            "malformed": list(self.malformed),
        }


def _describe(value: object) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    return format_value(value)


class _ScenarioReader:
    """Turns a parsed TOML table into a Scenario, checking every value against the DBC."""

    def __init__(self, source: str, db: Database, dbc: str) -> None:
        self.source = source
        self.dbc = dbc
        self.index = signal_index(db)

    def fail(self, key: str, problem: str) -> ScenarioError:
        return ScenarioError(self.source, key, problem)

    def scenario(self, data: Mapping[str, Any], default_name: str) -> Scenario:
        unknown = sorted(set(data) - {"name", "description", "step"})
        if unknown:
            raise self.fail(unknown[0], "unknown key (expected name, description, [[step]])")
        name = data.get("name", default_name)
        description = data.get("description", "")
        if not isinstance(name, str) or not isinstance(description, str):
            raise self.fail("name", "name and description must be text")
        raw_steps = data.get("step")
        if not isinstance(raw_steps, list) or not raw_steps:
            raise self.fail("step", "no [[step]] tables (a scenario needs at least one)")
        steps = tuple(self.step(raw, f"step[{n}]") for n, raw in enumerate(raw_steps, start=1))
        return Scenario(name, steps, description)

    def step(self, raw: object, key: str) -> Step:
        if not isinstance(raw, dict):
            raise self.fail(key, "expected a table")
        unknown = sorted(set(raw) - {"duration-s", "signals", "mute", "malformed"})
        if unknown:
            raise self.fail(
                f"{key}.{unknown[0]}", "unknown key (expected duration-s, signals, mute, malformed)"
            )
        duration = raw.get("duration-s")
        if isinstance(duration, bool) or not isinstance(duration, int | float) or duration <= 0:
            raise self.fail(f"{key}.duration-s", f"expected seconds > 0, got {duration!r}")
        signals = raw.get("signals", {})
        if not isinstance(signals, dict):
            raise self.fail(f"{key}.signals", "expected a table, e.g. { speed_kph = 0 }")
        values = {
            name: self.value(name, value, f"{key}.signals.{name}")
            for name, value in signals.items()
        }
        return Step(
            float(duration),
            values,
            self.names(raw.get("mute", []), f"{key}.mute"),
            self.names(raw.get("malformed", []), f"{key}.malformed"),
        )

    def signal(self, name: str, key: str) -> Signal:
        if name not in self.index:
            known = ", ".join(sorted(self.index))
            raise self.fail(key, f"{self.dbc} has no signal {name} (it has: {known})")
        return self.index[name][1]

    def names(self, raw: object, key: str) -> frozenset[str]:
        if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
            raise self.fail(key, 'expected a list of signal names, e.g. ["speed_kph"]')
        for item in raw:
            self.signal(item, key)
        return frozenset(raw)

    def value(self, name: str, value: object, key: str) -> Scalar:
        signal = self.signal(name, key)
        names = choice_names(signal)
        if names:
            if isinstance(value, str) and value in names:
                return value
            raise self.fail(key, f"{_describe(value)} is not a value of {name} ({' '.join(names)})")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"{name} is a number, got {_describe(value)}")
        low, high = signal.minimum, signal.maximum
        if (low is not None and value < low) or (high is not None and value > high):
            unit = f" {signal.unit}" if signal.unit else ""
            raise self.fail(
                key,
                f"{format_value(value)} is outside {name}'s range "
                f"{format_value(low)}..{format_value(high)}{unit} in {self.dbc}",
            )
        return value


def parse_scenario(
    data: Mapping[str, Any], db: Database, *, source: str, dbc: str = "the DBC"
) -> Scenario:
    """A scenario from a parsed TOML table; errors name *source* and the step."""
    return _ScenarioReader(source, db, dbc).scenario(data, Path(source).stem)


def load_scenario(path: Path, db: Database, *, dbc: str = "the DBC") -> Scenario:
    """Read a scenario file (TOML)."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ScenarioError(str(path), "", "scenario file not found") from None
    except OSError as exc:
        raise ScenarioError(str(path), "", f"cannot read: {exc.strerror or exc}") from None
    except UnicodeError:
        raise ScenarioError(str(path), "", "not a text file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(str(path), "", f"not valid TOML ({exc})") from None
    return parse_scenario(data, db, source=str(path), dbc=dbc)


def builtin_scenario(name: str, db: Database, *, dbc: str = "the DBC") -> Scenario:
    """A built-in scenario by name (see :data:`BUILTIN`)."""
    if name not in BUILTIN:
        raise ScenarioError(name, "", f"no built-in scenario (built-ins: {', '.join(BUILTIN)})")
    data = tomllib.loads(BUILTIN[name])
    return parse_scenario(data, db, source=f"built-in {name}", dbc=dbc)


def find_scenario(spec: str, db: Database, *, dbc: str = "the DBC") -> Scenario:
    """*spec* is a scenario file, or else the name of a built-in one."""
    path = Path(spec)
    if path.exists() or spec.endswith(".toml") or "/" in spec:
        return load_scenario(path, db, dbc=dbc)
    if spec in BUILTIN:
        return builtin_scenario(spec, db, dbc=dbc)
    raise ScenarioError(
        spec, "", f"no such scenario file, nor a built-in one (built-ins: {', '.join(BUILTIN)})"
    )


def _default(signal: Signal) -> Scalar:
    """What a signal no step has set is sent as."""
    if signal.initial is not None:
        initial = signal.initial
        return str(initial) if not isinstance(initial, int | float) else initial
    low = signal.minimum
    return low if low is not None and low > 0 else 0


class CanSimulator:
    """Plays a scenario on a python-can bus until it ends (never with ``loop``) or
    :meth:`stop`. The caller owns the bus."""

    def __init__(
        self,
        db: Database,
        bus: can.BusABC,
        scenario: Scenario,
        *,
        loop: bool = False,
        default_cycle_ms: int = DEFAULT_CYCLE_MS,
        on_step: Callable[[StepEvent], None] | None = None,
    ) -> None:
        if default_cycle_ms <= 0:
            raise ValueError("the default cycle time must be positive")
        self.db = db
        self.bus = bus
        self.scenario = scenario
        self.loop = loop
        self.default_cycle_ms = default_cycle_ms
        self.on_step = on_step
        self.index = signal_index(db)
        self.sent = 0
        """Frames sent so far (malformed ones included)."""
        self._stop = asyncio.Event()
        self._due: dict[str, float] = {}
        """Message name -> when it is next sent (loop time)."""
        self._last: dict[str, bytes] = {}
        """Message name -> the bytes it carried in the previous step."""
        self._send_failed = False

    def stop(self) -> None:
        """End :meth:`run` at the next frame (safe from a signal handler on the loop)."""
        self._stop.set()

    def cycle_s(self, message: Message) -> float:
        cycle = message.cycle_time or self.default_cycle_ms
        return cycle / 1000

    def _messages(self, names: Iterable[str]) -> set[str]:
        return {self.index[name][0].name for name in names}

    def _payloads(self, held: Mapping[str, Scalar], step: Step) -> dict[str, tuple[Message, bytes]]:
        """Message name -> the bytes it carries during *step* (muted ones left out)."""
        muted = self._messages(step.mute)
        short = self._messages(step.malformed)
        payloads: dict[str, tuple[Message, bytes]] = {}
        for message_name in sorted(self._messages(held) - muted):
            message = self.db.get_message_by_name(message_name)
            values = {s.name: held.get(s.name, _default(s)) for s in message.signals}
            try:
                data = bytes(message.encode(values, scaling=True, strict=True))
            except (CantoolsError, KeyError, ValueError) as exc:
                raise ScenarioError(
                    self.scenario.name, message_name, f"cannot encode: {exc}"
                ) from None
            payloads[message_name] = (message, data[:-1] if message_name in short else data)
        return payloads

    async def run(self) -> None:
        """Play the scenario; returns when it ends or :meth:`stop` is called."""
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        held: dict[str, Scalar] = {}
        rounds = 0
        while not self._stop.is_set():
            rounds += 1
            for number, step in enumerate(self.scenario.steps, start=1):
                held.update(step.signals)
                payloads = self._payloads(held, step)
                # A message whose bytes change goes out at once, then at its cycle, so
                # every step reaches the bus however short it is.
                for name, (_, data) in payloads.items():
                    if self._last.get(name) != data:
                        self._due.pop(name, None)
                self._last = {name: data for name, (_, data) in payloads.items()}
                if self.on_step is not None:
                    self.on_step(
                        StepEvent(
                            self.scenario.name,
                            rounds,
                            number,
                            len(self.scenario.steps),
                            step.duration_s,
                            time.monotonic() - started,
                            dict(held),
                            tuple(sorted(step.mute)),
                            tuple(sorted(step.malformed)),
                        )
                    )
                await self._play(loop, loop.time() + step.duration_s, payloads)
                if self._stop.is_set():
                    return
            if not self.loop:
                return

    async def _play(
        self,
        loop: asyncio.AbstractEventLoop,
        end: float,
        payloads: Mapping[str, tuple[Message, bytes]],
    ) -> None:
        """Send each message at its cycle until *end*."""
        while not self._stop.is_set():
            now = loop.time()
            if now >= end:
                return
            for name, (message, data) in payloads.items():
                due = self._due.setdefault(name, now)
                if due <= now:
                    self._send(message, data)
                    cycle = self.cycle_s(message)
                    # Keep the cadence; after a stall start again from now, no burst.
                    self._due[name] = due + cycle if due + cycle > now else now + cycle
            following = min((self._due[name] for name in payloads), default=end)
            timeout = max(min(following, end) - loop.time(), 0.0)
            await wait_event(self._stop, timeout)

    def _send(self, message: Message, data: bytes) -> None:
        frame = can.Message(
            arbitration_id=message.frame_id,
            data=data,
            is_extended_id=bool(message.is_extended_frame),
        )
        try:
            self.bus.send(frame)
        except can.CanError as exc:
            if not self._send_failed:
                log.warning("cannot send %s: %s (further failures not logged)", message.name, exc)
            self._send_failed = True
            return
        self.sent += 1
