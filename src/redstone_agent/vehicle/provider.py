"""Vehicle-state preconditions read from the vehicle's CAN bus.

:class:`CanPreconditions` opens a python-can bus, decodes the frames that
carry the signals the rules name (``signals.SignalStore``) and answers, per
gate, which rules do not hold (``rules.blockers``). The rules themselves are
pure (``rules.py``); this class only reads frames and keeps time.

Frames are read on the running asyncio loop: ``can.Notifier(loop=...)``
watches the bus's file descriptor where it has one (socketcan,
udp_multicast) or runs its receive thread and hands each frame to the loop
(virtual). Nothing here blocks the loop except ``close``, which waits up to
:data:`RECV_TIMEOUT_S` for that thread.

Gates (docs/vehicle.md §4): ``download`` checks ``download_rules``;
``flash``, ``activate`` and ``restore`` (a rollback) check ``rules``;
``install`` (consent) checks no vehicle rule.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

import can

from redstone_agent.aio import wait_event
from redstone_agent.vehicle.config import VehicleSettings
from redstone_agent.vehicle.errors import BusError
from redstone_agent.vehicle.rules import (
    Blocker,
    Rule,
    blockers,
    check_rule,
    evaluate,
    is_fresh,
    parse_rules,
    stale_at,
)
from redstone_agent.vehicle.signals import SignalStore, load_dbc, signal_index, signal_specs

__all__ = ["Blocker", "CanPreconditions", "open_bus"]

log = logging.getLogger(__name__)

RECV_TIMEOUT_S = 0.1
"""How long the notifier's receive thread blocks in one ``recv`` (bounds ``close``)."""
STALE_SLACK_S = 0.002
"""Wake this long after a signal's staleness limit, so it is stale when we look."""

RULES_KEY = "master.vehicle.rules"
DOWNLOAD_RULES_KEY = "master.vehicle.download-rules"

GATES_WITH_RULES = ("flash", "activate", "restore")
GATES_WITH_DOWNLOAD_RULES = ("download",)
GATES_WITHOUT_RULES = ("install",)


def open_bus(interface: str, channel: str, **kwargs: Any) -> can.BusABC:
    """Open a python-can bus, or raise a one-line BusError saying which and why."""
    try:
        return can.Bus(interface=interface, channel=channel, **kwargs)
    except (OSError, can.CanError, ValueError, ImportError) as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise BusError(f"cannot open CAN bus {interface}:{channel}: {detail}") from None


class _Feed(can.Listener):
    """Hands each received frame (already on the loop) to the provider."""

    def __init__(self, owner: CanPreconditions) -> None:
        self.owner = owner

    def on_message_received(self, msg: can.Message) -> None:
        self.owner._on_frame(msg)

    def on_error(self, exc: Exception) -> None:
        self.owner._on_bus_error(exc)

    def stop(self) -> None:
        """Nothing to release: the provider owns the bus."""


class CanPreconditions:
    """Rules over live CAN signals, asked by the Master before and while it installs.

    The DBC is loaded and every rule parsed and checked against it when the
    object is made, so a bad ``[master.vehicle]`` stops the Master at start with
    one line. Pass *bus* to use an already-open python-can bus (tests use a
    ``virtual`` pair in one process); the caller then keeps ownership of it.
    """

    def __init__(
        self,
        settings: VehicleSettings,
        *,
        bus: can.BusABC | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._clock = clock
        dbc = str(settings.dbc)
        db = load_dbc(settings.dbc)
        specs = signal_specs(db)
        self._rules = parse_rules(settings.rules, RULES_KEY)
        self._download_rules = parse_rules(settings.download_rules, DOWNLOAD_RULES_KEY)
        for rule in self._rules:
            check_rule(rule, specs, dbc, RULES_KEY)
        for rule in self._download_rules:
            check_rule(rule, specs, dbc, DOWNLOAD_RULES_KEY)
        self._all_rules = self._rules + self._download_rules
        self._watched = frozenset(rule.signal for rule in self._all_rules)
        index = signal_index(db)
        self._watched_frames = sorted(
            {
                (index[name][0].frame_id, bool(index[name][0].is_extended_frame))
                for name in self._watched
            }
        )
        self._store = SignalStore(db, source=dbc, clock=clock)
        self._bus = bus
        self._owns_bus = bus is None
        self._notifier: can.Notifier | None = None
        self._changed = asyncio.Event()
        self._last_seen: tuple[bool, ...] | None = None
        """The truth of every rule as the caller last saw it (blockers / wait_change)."""
        self.bus_error: str | None = None
        """Why the bus stopped delivering frames, once it has (then signals go stale)."""

    @property
    def store(self) -> SignalStore:
        """The decoded signals (and the count of malformed frames per id)."""
        return self._store

    @property
    def name(self) -> str:
        """The bus as logs name it: ``socketcan:can0``, or a given bus's own description."""
        if self._bus is not None and not self._owns_bus:
            return str(self._bus.channel_info)
        return f"{self.settings.interface}:{self.settings.channel}"

    async def start(self) -> None:
        """Open the bus (unless one was given) and decode its frames on this loop."""
        if self._notifier is not None:
            return
        loop = asyncio.get_running_loop()
        if self._bus is None:
            self._bus = open_bus(
                self.settings.interface, self.settings.channel, **self.settings.bus_options
            )
            # Only the frames the rules need: a vehicle bus carries thousands a second.
            self._bus.set_filters(
                [
                    {"can_id": frame_id, "can_mask": 0x1FFFFFFF if ext else 0x7FF, "extended": ext}
                    for frame_id, ext in self._watched_frames
                ]
                or None
            )
        self.bus_error = None
        self._notifier = can.Notifier(self._bus, [_Feed(self)], timeout=RECV_TIMEOUT_S, loop=loop)
        log.info(
            "vehicle state from CAN %s (%s): %d rules, %d download rules, freshness %d ms",
            self.name,
            self.settings.dbc,
            len(self._rules),
            len(self._download_rules),
            self.settings.freshness_ms,
        )

    async def close(self) -> None:
        """Stop reading; shut the bus down if this object opened it. Idempotent."""
        notifier, self._notifier = self._notifier, None
        if notifier is not None:
            notifier.stop(timeout=RECV_TIMEOUT_S * 5)
        if self._owns_bus and self._bus is not None:
            bus, self._bus = self._bus, None
            bus.shutdown()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def rules_for(self, gate: str) -> tuple[Rule, ...]:
        """The rules a gate checks: ``download`` -> download rules; ``flash``,
        ``activate`` and ``restore`` -> rules; ``install`` -> none. Another gate
        is a programming error (ValueError), never a silent pass."""
        if gate in GATES_WITH_DOWNLOAD_RULES:
            return self._download_rules
        if gate in GATES_WITH_RULES:
            return self._rules
        if gate in GATES_WITHOUT_RULES:
            return ()
        known = GATES_WITH_DOWNLOAD_RULES + GATES_WITH_RULES + GATES_WITHOUT_RULES
        raise ValueError(f"unknown gate {gate!r} (expected one of: {', '.join(known)})")

    def blockers(self, gate: str) -> list[Blocker]:
        """The rules of *gate* that do not hold now; empty when all hold."""
        now = self._clock()
        self._last_seen = self._truth(now)
        return blockers(self.rules_for(gate), self._store.samples, now, self.settings.freshness_ms)

    def values(self) -> dict[str, tuple[object, float]]:
        """Signal -> (latest value, its age in seconds), for status output."""
        now = self._clock()
        return {name: (s.value, now - s.at) for name, s in sorted(self._store.samples.items())}

    async def wait_change(self, timeout_s: float) -> None:
        """Return when some rule's truth has changed since the caller last looked
        (:meth:`blockers` or the previous return), or after *timeout_s*.

        A frame that changes a watched signal's value, or brings back a stale
        one, wakes it; so does the moment the next watched signal goes stale.
        """
        deadline = self._clock() + timeout_s
        seen = self._last_seen if self._last_seen is not None else self._truth(self._clock())
        try:
            while True:
                now = self._clock()
                if self._truth(now) != seen or now >= deadline:
                    return
                changed = self._changed
                wake = min(deadline, self._next_stale(now) + STALE_SLACK_S) - now
                await wait_event(changed, max(wake, 0.0))
        finally:
            self._last_seen = self._truth(self._clock())

    def _truth(self, now: float) -> tuple[bool, ...]:
        samples, freshness = self._store.samples, self.settings.freshness_ms
        return tuple(
            evaluate(rule, samples.get(rule.signal), now, freshness) is None
            for rule in self._all_rules
        )

    def _next_stale(self, now: float) -> float:
        """When the next watched, now fresh, signal goes stale (inf: none will)."""
        freshness = self.settings.freshness_ms
        times = [
            stale_at(sample, freshness)
            for name in self._watched
            if (sample := self._store.sample(name)) is not None and is_fresh(sample, now, freshness)
        ]
        return min(times, default=math.inf)

    def _on_frame(self, msg: can.Message) -> None:
        if self._notifier is None or msg.is_error_frame or msg.is_remote_frame:
            return
        previous = self._store.feed(
            msg.arbitration_id, bytes(msg.data), extended=bool(msg.is_extended_id)
        )
        if not previous:
            return
        freshness = self.settings.freshness_ms
        for name, before in previous.items():
            if name not in self._watched:
                continue
            after = self._store.sample(name)
            if (
                before is None
                or after is None
                or before.value != after.value
                or not is_fresh(before, after.at, freshness)
            ):
                self._changed.set()
                self._changed = asyncio.Event()
                return

    def _on_bus_error(self, exc: Exception) -> None:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        if self.bus_error is None:
            log.error(
                "CAN bus %s stopped delivering frames: %s; its signals will go stale",
                self.name,
                detail,
            )
        self.bus_error = detail
