"""The Master's FindService answers (docs/someip.md §10.1): one find at a time, a found
endpoint reused for FIND_REUSE_S by calls, never by availability checks, never when
"not found", and forgotten as soon as the instance fails to answer as found."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from redstone_agent.someip.binding import RETURN_UNKNOWN_SERVICE, error_for_reply
from redstone_agent.someip.errors import ServiceUnavailable
from redstone_agent.someip.someipy_binding import FIND_REUSE_S, _OneFindAtATime

KEY = (0x5244, 2, 1, 0xFFFF_FFFF)


@dataclass
class Found:
    service_id: int
    instance_id: int
    endpoint: tuple[str, int]


class Daemon:
    """What someipyd answers FindService with, and how often it was asked."""

    def __init__(self) -> None:
        self.answer: Found | None = Found(0x5244, 2, ("10.0.0.2", 30510))
        self.asked = 0

    async def find(self, *_key: int) -> Any:
        self.asked += 1
        return self.answer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def finder() -> tuple[_OneFindAtATime, Daemon, Clock]:
    daemon, clock = Daemon(), Clock()
    return _OneFindAtATime(daemon.find, clock), daemon, clock


def test_calls_within_the_window_reuse_the_endpoint() -> None:
    find, daemon, clock = finder()

    async def scenario() -> None:
        first = await find(*KEY)
        clock.now += FIND_REUSE_S * 0.9
        assert await find(*KEY) is first
        assert daemon.asked == 1
        clock.now += FIND_REUSE_S * 0.2  # the window counts from the find, not the reuse
        await find(*KEY)
        assert daemon.asked == 2

    asyncio.run(scenario())


def test_availability_always_asks_the_daemon_and_refreshes_the_window() -> None:
    find, daemon, clock = finder()

    async def scenario() -> None:
        await find.fresh(*KEY)
        await find.fresh(*KEY)
        assert daemon.asked == 2
        clock.now += FIND_REUSE_S * 0.5
        await find(*KEY)
        assert daemon.asked == 2

    asyncio.run(scenario())


def test_not_found_is_never_reused_and_clears_what_was_known() -> None:
    find, daemon, _clock = finder()

    async def scenario() -> None:
        await find(*KEY)
        daemon.answer = None
        assert await find.fresh(*KEY) is None  # the offer ended (StopOffer or TTL)
        assert await find(*KEY) is None
        assert daemon.asked == 3

    asyncio.run(scenario())


def test_forget_sends_the_next_call_to_the_daemon() -> None:
    find, daemon, _clock = finder()

    async def scenario() -> None:
        await find(*KEY)
        find.forget(0x5244, 3)  # another instance: ours is still known
        await find(*KEY)
        assert daemon.asked == 1
        find.forget(0x5244, 2)
        await find(*KEY)
        assert daemon.asked == 2

    asyncio.run(scenario())


def test_an_answer_for_another_instance_is_not_found_and_not_kept() -> None:
    find, daemon, _clock = finder()

    async def scenario() -> None:
        daemon.answer = Found(0x5244, 1, ("10.0.0.1", 30510))
        assert await find(*KEY) is None
        assert await find(*KEY) is None
        assert daemon.asked == 2

    asyncio.run(scenario())


def test_unknown_service_from_a_node_means_unavailable_not_refused() -> None:
    error = error_for_reply(RETURN_UNKNOWN_SERVICE, b"")
    assert isinstance(error, ServiceUnavailable)
    assert "E_UNKNOWN_SERVICE (0x02)" in str(error)
