"""How slowly a download may go before it counts as a slow-retrieval attack.

A per-read timeout only catches a server that goes silent; one that trickles
a byte every few seconds passes every read and could hold an install (and
the node's install lock) for ever. A fixed total deadline would catch it but
also fails a big image on a slow cellular link, so the rule is a minimum
*average rate over a window*: every ``window`` seconds of a connection must
bring at least ``min_rate × window`` bytes. A legitimate link that slow is
unusable anyway; a trickle is recognised within one window (plus one read
timeout, since the rule is checked whenever a read returns). ``deadline``
optionally bounds the whole transfer as well, for callers that know how long
is too long.

Used by ``transfer.HttpSource`` (images from the Master's cache or any URL)
and the Uptane fetcher (metadata and targets from the cloud). Pure: the
clock comes in, so tests need not sleep.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]
"""Monotonic seconds."""


@dataclass(frozen=True)
class Pace:
    """The slowest a transfer may be; the defaults accept any working cellular link."""

    min_rate: float = 1024.0
    """Bytes per second a connection must average over each window; 0 turns the rule off."""
    window: float = 60.0
    """Seconds the average is taken over (long enough for a radio to ride out a bad spot)."""
    deadline: float | None = None
    """Seconds the whole transfer may take, retries included; None: no total bound."""

    def __post_init__(self) -> None:
        if self.min_rate < 0 or self.window <= 0:
            raise ValueError("Pace needs min_rate >= 0 and window > 0")
        if self.deadline is not None and self.deadline <= 0:
            raise ValueError("Pace.deadline must be positive")

    def watch(self, clock: Clock = time.monotonic) -> PaceWatch:
        """Start timing a transfer now."""
        return PaceWatch(self, clock)


class PaceWatch:
    """Times one transfer: call :meth:`restart` on each new connection, :meth:`update` per read.

    The window is a tumbling one: it starts when a connection does, and each
    time a read comes back at least ``window`` seconds after the start of the
    current window, the bytes since that start must average ``min_rate``;
    then a new window begins. Time spent reconnecting is not judged (the
    retry budget bounds that), but it counts toward ``deadline``.
    """

    def __init__(self, pace: Pace, clock: Clock) -> None:
        self.pace = pace
        self._clock = clock
        self._start = clock()
        self._received = 0
        self._window_start = self._start
        self._window_received = 0
        self.windows_passed = 0
        """Full windows that met the rate since the last restart."""

    def restart(self) -> None:
        """A new connection: the next window starts now (the deadline does not)."""
        self._window_start = self._clock()
        self._window_received = self._received
        self.windows_passed = 0

    def update(self, received: int) -> str | None:
        """Count ``received`` more bytes; a one-line reason when the last window was too slow."""
        self._received += received
        now = self._clock()
        elapsed = now - self._window_start
        if elapsed < self.pace.window or self.pace.min_rate == 0:
            return None
        got = self._received - self._window_received
        if got < self.pace.min_rate * elapsed:
            return (
                f"too slow: {got} bytes in {elapsed:.0f} s, "
                f"under the minimum {self.pace.min_rate:g} B/s"
            )
        self._window_start = now
        self._window_received = self._received
        self.windows_passed += 1
        return None

    def overdue(self) -> str | None:
        """A one-line reason when the whole transfer has run past ``deadline``."""
        if self.pace.deadline is None:
            return None
        elapsed = self._clock() - self._start
        if elapsed <= self.pace.deadline:
            return None
        return f"not complete within {self.pace.deadline:g} s"
