"""When to poll next: the server's pace while it answers, jittered backoff while it does not.

Pure (no clock, no sleeping): the daemon asks for a delay and sleeps itself,
so tests drive it with a seeded ``random.Random``.

After a success the delay is the interval the server named (the backend spreads
a fleet's load with it), else the last one it named, else the configured
default. After ``n`` consecutive errors it is uniform in
``[0, min(cap, base * 2**n)]`` — full jitter, the scheme ``redstone_agent.retry``
uses — so a fleet that lost the same server does not return in lock-step and
hammer it the moment it is back. A success resets the count.
"""

from __future__ import annotations

import math
import random


class PollSchedule:
    """Delays between polls."""

    def __init__(
        self,
        *,
        base_s: float = 5.0,
        cap_s: float = 600.0,
        interval_s: float = 300.0,
        rng: random.Random | None = None,
        min_interval_s: float = 1.0,
        max_interval_s: float = 86400.0,
    ) -> None:
        """``min_interval_s``/``max_interval_s`` bound what a server may ask for: a broken or
        hostile one can neither make the TBox poll in a busy loop nor silence it for weeks."""
        for name, value in (
            ("base_s", base_s),
            ("cap_s", cap_s),
            ("interval_s", interval_s),
            ("min_interval_s", min_interval_s),
            ("max_interval_s", max_interval_s),
        ):
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if base_s > cap_s or min_interval_s > max_interval_s:
            raise ValueError("base_s must not exceed cap_s, nor min_interval_s max_interval_s")
        self.base_s = base_s
        self.cap_s = cap_s
        self.min_interval_s = min_interval_s
        self.max_interval_s = max_interval_s
        self.interval_s = self._bounded(interval_s)
        """The interval used after a success that names none (last server-named one)."""
        self._rng = rng or random.Random()
        self.errors = 0
        """Consecutive errors since the last success."""

    def _bounded(self, seconds: float) -> float:
        return min(max(seconds, self.min_interval_s), self.max_interval_s)

    def after_success(self, server_interval_s: float | None) -> float:
        """Seconds until the next poll after one that worked (resets the backoff)."""
        self.errors = 0
        if server_interval_s is not None and math.isfinite(server_interval_s):
            self.interval_s = self._bounded(server_interval_s)
        return self.interval_s

    def ceiling(self) -> float:
        """The upper bound of the next error delay (``min(cap, base * 2**errors)``)."""
        # Compare exponents rather than computing 2**errors: it would overflow a float.
        if self.errors >= math.log2(self.cap_s / self.base_s) + 1:
            return self.cap_s
        return min(self.cap_s, self.base_s * float(2**self.errors))

    def after_error(self) -> float:
        """Seconds until the next poll after one that failed; grows with each further error."""
        bound = self.ceiling()
        self.errors += 1
        return self._rng.uniform(0.0, bound)
