"""Per-vehicle quotas on what vehicles may send (events, logs), pure apart from a clock.

Each vehicle gets two token buckets per kind of upload: one counting requests,
one counting bytes. A bucket holds up to its hourly budget and refills
continuously at budget/hour, so a vehicle may burst up to an hour's worth and
then sustain the hourly rate. A refused upload costs nothing; the answer is
``429`` with ``Retry-After`` (the Master's client retries 429 with backoff).

The buckets live in the serving process (several ``serve`` processes each keep
their own, so the fleet-wide limit is the per-process one times the process
count). Idle vehicles' buckets are dropped, so memory follows active vehicles.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from redstone_cloud.errors import CloudError

HOUR = 3600.0


class QuotaExceeded(CloudError):
    """A vehicle sent more than its budget; ``retry_after`` seconds until it may again."""

    status = 429

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Budget:
    """What one kind of upload may use per hour."""

    what: str
    requests_per_hour: int
    bytes_per_hour: int


@dataclass
class _Bucket:
    requests: float
    bytes: float
    at: float


class Quotas:
    """Token buckets per (vehicle, budget); thread-safe (handlers run on worker threads)."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, max_vehicles: int = 200_000
    ) -> None:
        self._clock = clock
        self._max = max_vehicles
        self._buckets: OrderedDict[tuple[int, str], _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def charge(self, vehicle_id: int, budget: Budget, size: int) -> None:
        """Take one request of ``size`` bytes from the vehicle's budget, or raise 429."""
        if budget.requests_per_hour <= 0 and budget.bytes_per_hour <= 0:
            return
        now = self._clock()
        key = (vehicle_id, budget.what)
        with self._lock:
            bucket = self._buckets.pop(key, None)
            if bucket is None:
                bucket = _Bucket(budget.requests_per_hour, budget.bytes_per_hour, now)
            elapsed = max(0.0, now - bucket.at)
            bucket.requests = min(
                budget.requests_per_hour,
                bucket.requests + elapsed * budget.requests_per_hour / HOUR,
            )
            bucket.bytes = min(
                budget.bytes_per_hour, bucket.bytes + elapsed * budget.bytes_per_hour / HOUR
            )
            bucket.at = now
            self._buckets[key] = bucket
            if len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
            wait = max(
                _wait(bucket.requests, 1, budget.requests_per_hour),
                _wait(bucket.bytes, size, budget.bytes_per_hour),
            )
            if wait > 0:
                raise QuotaExceeded(
                    f"{budget.what} quota exceeded ({budget.requests_per_hour} requests and "
                    f"{budget.bytes_per_hour} bytes per hour); retry in {math.ceil(wait)} s",
                    wait,
                )
            if budget.requests_per_hour > 0:
                bucket.requests -= 1
            if budget.bytes_per_hour > 0:
                bucket.bytes -= size


def _wait(have: float, need: float, per_hour: int) -> float:
    """Seconds until ``have`` reaches ``need`` (0: now; inf: never, the need is over budget)."""
    if per_hour <= 0 or have >= need:
        return 0.0
    if need > per_hour:
        return math.inf
    return (need - have) * HOUR / per_hour
