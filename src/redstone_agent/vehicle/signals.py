"""CAN frames to signal values: decode with a DBC, keep each signal's latest value.

A frame with an id the DBC does not define is ignored. A frame the DBC defines
but that does not decode (wrong length, a multiplexer value it lacks) is
counted per id and logged the first time only: a bad sender on the bus must
not flood the log nor stop the decoding of everyone else. Nothing here raises
on bus input.

Enum values become their choice names (cantools ``NamedSignalValue`` -> str);
scaled numbers are rounded to the resolution the DBC gives them, so a raw
1220 with factor 0.01 is 12.2 and not 12.200000000000001 (a rule
``battery_v <= 12.2`` must hold for it).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path

import cantools
from cantools.database.can import Database, Message, Signal
from cantools.database.errors import DecodeError
from cantools.database.errors import Error as CantoolsError
from cantools.database.namedsignalvalue import NamedSignalValue

from redstone_agent.vehicle.errors import DbcError
from redstone_agent.vehicle.rules import Sample, Scalar, SignalSpec

log = logging.getLogger(__name__)

EXAMPLE_DBC = Path(__file__).resolve().with_name("vehicle.dbc")
"""The example DBC installed with the package (``etc/redstone/vehicle.dbc`` links to it):
the signals of docs/vehicle.md §1 and of the simulator's built-in scenarios."""


def load_dbc(path: Path) -> Database:
    """Read a DBC file, or raise a one-line DbcError naming it."""
    try:
        db = cantools.database.load_file(str(path), database_format="dbc", strict=True)
    except FileNotFoundError:
        raise DbcError(str(path), "DBC file not found") from None
    except IsADirectoryError:
        raise DbcError(str(path), "is a directory, not a DBC file") from None
    except PermissionError:
        raise DbcError(str(path), "permission denied") from None
    except (CantoolsError, UnicodeError, ValueError) as exc:
        detail = " ".join(str(exc).split())[:200]
        raise DbcError(str(path), f"not a valid DBC file ({detail})") from None
    if not isinstance(db, Database) or not db.messages:
        raise DbcError(str(path), "defines no CAN messages")
    return db


def signal_index(db: Database) -> dict[str, tuple[Message, Signal]]:
    """Signal name -> the message that carries it (the first one, if several do)."""
    index: dict[str, tuple[Message, Signal]] = {}
    for message in db.messages:
        for signal in message.signals:
            index.setdefault(signal.name, (message, signal))
    return index


def choice_names(signal: Signal) -> tuple[str, ...]:
    """An enum signal's choice names in raw-value order; empty for a numeric signal."""
    if not signal.choices:
        return ()
    return tuple(str(signal.choices[raw]) for raw in sorted(signal.choices))


def signal_specs(db: Database) -> dict[str, SignalSpec]:
    """What the rules need to know about each signal of *db*."""
    return {
        name: SignalSpec(
            name,
            choice_names(signal),
            None if signal.minimum is None else float(signal.minimum),
            None if signal.maximum is None else float(signal.maximum),
            signal.unit or "",
        )
        for name, (_, signal) in signal_index(db).items()
    }


def _decimals(number: float) -> int:
    exponent = Decimal(str(number)).as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _resolution(signal: Signal) -> int | None:
    """Decimal places a scaled value has (None: leave it as decoded)."""
    if signal.is_float:
        return None
    scale, offset = float(signal.scale), float(signal.offset)
    if scale.is_integer() and offset.is_integer():
        return None
    return max(_decimals(scale), _decimals(offset))


class SignalStore:
    """The latest value of every signal the DBC defines, with its arrival time."""

    def __init__(
        self, db: Database, *, source: str = "DBC", clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.db = db
        self.source = source
        self.clock = clock
        self._messages: dict[tuple[int, bool], Message] = {
            (m.frame_id, bool(m.is_extended_frame)): m for m in db.messages
        }
        self._rounding = {
            signal.name: _resolution(signal) for m in db.messages for signal in m.signals
        }
        self._samples: dict[str, Sample] = {}
        self.malformed: Counter[int] = Counter()
        """Frame id -> frames of that id that did not decode."""
        self.decoded = 0
        """Frames decoded so far."""

    @property
    def samples(self) -> Mapping[str, Sample]:
        """Signal -> its latest sample (signals never received are absent)."""
        return self._samples

    def sample(self, name: str) -> Sample | None:
        return self._samples.get(name)

    def feed(
        self, frame_id: int, data: bytes, *, extended: bool = False
    ) -> dict[str, Sample | None]:
        """Decode one frame; return each signal it carried with its previous sample
        (None: first time). Unknown ids and malformed frames return ``{}``."""
        message = self._messages.get((frame_id, extended))
        if message is None:
            return {}
        if len(data) != message.length:
            self._bad(message, f"{len(data)} bytes, the DBC says {message.length}")
            return {}
        try:
            decoded = message.decode(data, decode_choices=True, scaling=True)
        except (DecodeError, ValueError, KeyError) as exc:
            self._bad(message, " ".join(str(exc).split())[:120])
            return {}
        if not isinstance(decoded, dict):  # a container message: not used for signals
            return {}
        now = self.clock()
        self.decoded += 1
        previous: dict[str, Sample | None] = {}
        for name, raw in decoded.items():
            previous[name] = self._samples.get(name)
            self._samples[name] = Sample(self._value(name, raw), now)
        return previous

    def _value(self, name: str, raw: object) -> Scalar:
        if isinstance(raw, NamedSignalValue):
            return str(raw)
        if isinstance(raw, float):
            places = self._rounding.get(name)
            return raw if places is None else round(raw, places)
        if isinstance(raw, int | str):
            return raw
        return str(raw)

    def _bad(self, message: Message, why: str) -> None:
        self.malformed[message.frame_id] += 1
        if self.malformed[message.frame_id] == 1:
            log.warning(
                "frame 0x%X (%s) does not decode with %s: %s; "
                "ignored, and further ones of this id only counted",
                message.frame_id,
                message.name,
                self.source,
                why,
            )
