"""Retry timing shared by everything that talks over a network.

Exponential backoff with full jitter (the AWS architecture-blog scheme): the
n-th delay is uniform in ``[0, min(cap, base * 2**n)]``, so a fleet of vehicles
that lost the same server does not come back in lock-step.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a failed network operation."""

    attempts: int = 5
    """Total tries including the first; 1 means no retry."""
    base_delay: float = 0.5
    """Seconds; the upper bound of the first jittered delay."""
    max_delay: float = 30.0
    """Seconds; no single delay exceeds this."""
    timeout: float = 30.0
    """Seconds a single connect or read may block."""

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """Yield the pause before each retry (``attempts - 1`` values)."""
        pick = (rng or random).uniform
        for n in range(max(self.attempts - 1, 0)):
            yield pick(0.0, min(self.max_delay, self.base_delay * (2**n)))
