"""The Master's Policy port: the driver's consent and the vehicle's state, per gate.

Consent (``[master] consent``, docs/master.md §6):

======================  =====================================================
mode                    asks at
======================  =====================================================
``auto``                ``install``, only when the campaign requires consent
``ask`` (``required``)  ``install``: before any ECU is touched
``ask-before-activation``  ``flash`` and ``activate``: Subs receive their images
                        in the background; the first step the driver would
                        notice (a UDS flash, a reboot) waits for the answer
======================  =====================================================

Answers live in :class:`ConsentStore` (one small file per campaign, so an
accept survives a restart and ``redstone-master accept`` works without
D-Bus). A postponement expires by itself and the driver is asked again.

Vehicle state: with ``[master.vehicle]`` the CAN rules are checked at
``download`` (``download-rules``), ``flash``, ``activate`` and ``restore``
(``rules``). ``restore`` (a rollback) never waits for consent.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from redstone_agent.journal import atomic_write
from redstone_agent.master.gating import Changes
from redstone_agent.master.ports import Cause, Decision, Gate, Verdict

MAX_POSTPONE_S = 7 * 24 * 3600.0
ACCEPT, DECLINE, POSTPONE = "accept", "decline", "postpone"
CONSENT_AT = {
    "auto": frozenset({Gate.INSTALL}),
    "ask": frozenset({Gate.INSTALL}),
    "required": frozenset({Gate.INSTALL}),
    "ask-before-activation": frozenset({Gate.FLASH, Gate.ACTIVATE}),
}
"""Gates at which each consent mode asks (``auto`` only when the campaign requires it)."""
VEHICLE_GATES = {
    Gate.DOWNLOAD: "download",
    Gate.FLASH: "flash",
    Gate.ACTIVATE: "activate",
    Gate.RESTORE: "flash",
}
"""Gates at which the CAN rules are checked, and which rule set applies."""


class Blocking(Protocol):
    @property
    def reason(self) -> str: ...


class Preconditions(Protocol):
    """The vehicle-state provider (``vehicle.provider.CanPreconditions``).

    ``wait_change`` returns when a rule's truth may have changed since the
    last ``blockers`` call (or after the timeout)."""

    def blockers(self, gate: str) -> Sequence[Blocking]: ...

    async def wait_change(self, timeout_s: float) -> None: ...


@dataclass(frozen=True)
class Answer:
    kind: str
    """accept, decline or postpone."""
    until: float = 0.0
    """postpone: wall-clock seconds when the driver is asked again."""


class ConsentStore:
    """The driver's answer per campaign: ``<state-dir>/consent/<campaign>``.

    File content: ``accept``, ``decline`` or ``postpone <unix-time>``.
    """

    def __init__(self, directory: Path, now: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self._now = now
        self.changes = Changes()

    def get(self, campaign: str) -> Answer | None:
        if not campaign or "/" in campaign:
            return None
        try:
            words = (self.directory / campaign).read_text().split()
        except OSError:
            return None
        if words[:1] == [POSTPONE] and len(words) == 2:
            with contextlib.suppress(ValueError):
                return Answer(POSTPONE, float(words[1]))
            return None
        if words in ([ACCEPT], [DECLINE]):
            return Answer(words[0])
        return None

    def answer(self, campaign: str, kind: str, seconds: float = 0.0) -> Answer:
        """Record an answer (``seconds``: for postpone, from now)."""
        if "/" in campaign or not campaign:
            raise ValueError(f"not a campaign name: {campaign!r}")
        answer = Answer(kind, self._now() + seconds if kind == POSTPONE else 0.0)
        text = f"{kind} {answer.until:.0f}" if kind == POSTPONE else kind
        self.directory.mkdir(parents=True, exist_ok=True)
        atomic_write(self.directory / campaign, f"{text}\n".encode(), mode=0o644)
        self.changes.bump()
        return answer

    def pending_expiry(self, campaign: str) -> float | None:
        """Seconds until a running postponement ends (None: none running)."""
        answer = self.get(campaign)
        if answer is None or answer.kind != POSTPONE:
            return None
        left = answer.until - self._now()
        return left if left > 0 else None


class VehiclePolicy:
    """Policy over consent and (optionally) the CAN preconditions."""

    def __init__(
        self,
        mode: str,
        store: ConsentStore,
        preconditions: Preconditions | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        if mode not in CONSENT_AT:
            raise ValueError(f"unknown consent mode {mode!r}")
        self._mode = mode
        self._store = store
        self._pre = preconditions
        self._now = now
        self._campaign = ""
        self._seen = 0

    async def check(self, gate: Gate, campaign: str, consent_required: bool) -> Verdict:
        self._campaign = campaign
        self._seen = self._store.changes.count
        consent = Cause.NONE
        if gate in CONSENT_AT[self._mode] and (self._mode != "auto" or consent_required):
            waiting = self._consent(campaign)
            if waiting is not None:
                return waiting
            consent = Cause.CONSENT
        vehicle = self._vehicle(gate)
        if vehicle is not None:
            return vehicle
        return Verdict(Decision.ALLOW, "accepted" if consent else "", consent)

    def _consent(self, campaign: str) -> Verdict | None:
        """None when the driver accepted; else why the campaign waits or stops."""
        answer = self._store.get(campaign)
        if answer is not None and answer.kind == ACCEPT:
            return None
        if answer is not None and answer.kind == DECLINE:
            return Verdict(Decision.REFUSE, "the driver declined the update", Cause.CONSENT)
        left = self._store.pending_expiry(campaign)
        if left is not None:
            clock = time.strftime("%H:%M", time.localtime(self._now() + left))
            return Verdict(
                Decision.WAIT,
                f"postponed by the driver until {clock} ({left:.0f} s left)",
                Cause.POSTPONED,
            )
        return Verdict(
            Decision.WAIT, "waiting for the driver's consent (redstonectl accept)", Cause.CONSENT
        )

    def _vehicle(self, gate: Gate) -> Verdict | None:
        if self._pre is None or gate not in VEHICLE_GATES:
            return None
        blockers = self._pre.blockers(VEHICLE_GATES[gate])
        if not blockers:
            return None
        reason = blockers[0].reason
        if len(blockers) > 1:
            reason += f" (and {len(blockers) - 1} more)"
        return Verdict(Decision.WAIT, reason, Cause.VEHICLE)

    async def wait_change(self, timeout_s: float) -> None:
        """Until a signal changes, a consent arrives, a postponement ends, or the timeout."""
        left = self._store.pending_expiry(self._campaign)
        if left is not None:
            timeout_s = min(timeout_s, left + 0.05)
        waits: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(self._store.changes.wait_past(self._seen, timeout_s))
        ]
        if self._pre is not None:
            waits.append(asyncio.ensure_future(self._pre.wait_change(timeout_s)))
        try:
            await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
