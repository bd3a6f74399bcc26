"""Hypothesis settings of the fuzz suite, and the checks every fuzz test shares.

Profiles, chosen by ``REDSTONE_FUZZ_PROFILE`` (default ``ci``)::

    ci    bounded: the whole suite stays well under a minute (what CI runs)
    deep  ~50x more examples per test, for a local hunt (minutes to an hour)
    dev   few examples, for editing the tests themselves

e.g. ``REDSTONE_FUZZ_PROFILE=deep pytest tests/fuzz``. The profile is applied
per test through :func:`fuzz` rather than loaded globally, so other
Hypothesis users in the tree (schemathesis) keep their own defaults.
Per-example deadlines stay generous in every profile: they flag an input
that makes a parser crawl (a DoS), not a slow machine.
"""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings

_PROFILES = {
    "ci": 1,
    "deep": 50,
    "dev": 0.1,
}
PROFILE = os.environ.get("REDSTONE_FUZZ_PROFILE", "ci")
if PROFILE not in _PROFILES:
    raise RuntimeError(f"REDSTONE_FUZZ_PROFILE={PROFILE!r}: expected one of {', '.join(_PROFILES)}")

F = TypeVar("F", bound=Callable[..., Any])


def fuzz(examples: int, *, deadline_ms: int | None = None) -> Callable[[F], F]:
    """Settings for one test: ``examples`` under the ci profile, scaled by the active one.

    No deadline unless a test asks for one: an fsync under QEMU load took 3.2 s in CI,
    and a timed assertion there tests the machine, not the code.
    """
    scaled = max(5, int(examples * _PROFILES[PROFILE]))
    return settings(  # type: ignore[no-any-return]
        max_examples=scaled,
        deadline=None if deadline_ms is None else timedelta(milliseconds=deadline_ms),
        # The CI clone is fresh; locally, failing examples are replayed first.
        database=None if os.environ.get("CI") == "true" else settings.default.database,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        print_blob=True,
    )


def one_line(exc: BaseException) -> str:
    """The error's text, checked to be the one clear line the CLI prints."""
    text = str(exc)
    assert text, f"{type(exc).__name__} without a message"
    assert "\n" not in text, f"{type(exc).__name__} spans lines: {text!r}"
    return text


@contextmanager
def peak_memory_below(limit: int) -> Iterator[None]:
    """Fail if the block allocates more than ``limit`` bytes at its peak (Python heap)."""
    tracemalloc.start()
    try:
        yield
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < limit, f"peak allocation {peak} bytes, limit {limit}"
