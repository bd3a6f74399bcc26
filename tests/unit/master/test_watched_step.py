"""A watched step's watcher ends when the step does, even if a change lands at that moment.

On Python 3.11 ``asyncio.wait_for`` swallowed a cancellation that arrived while its
event was being set; the Master's watcher then looped on and ``run_watched`` waited
for it forever (a campaign hung after a restart in CI). ``wait_event`` lets the
cancellation through.
"""

from __future__ import annotations

import asyncio

import pytest

from redstone_agent.aio import wait_event
from redstone_agent.master.gating import Changes


def test_a_cancel_that_arrives_as_the_event_is_set_is_not_lost() -> None:
    async def scenario() -> None:
        event = asyncio.Event()
        waiter = asyncio.ensure_future(wait_event(event, 10))
        await asyncio.sleep(0)  # the waiter now waits on the event
        event.set()
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter

    asyncio.run(scenario())


def test_changes_waiter_cancelled_while_a_change_lands_ends() -> None:
    async def scenario() -> None:
        changes = Changes()
        waiter = asyncio.ensure_future(changes.wait_past(changes.count, 10))
        await asyncio.sleep(0)
        changes.bump()
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(waiter, 5)

    asyncio.run(scenario())


def test_wait_event_answers_whether_the_event_came() -> None:
    async def scenario() -> tuple[bool, bool]:
        event = asyncio.Event()
        missed = await wait_event(event, 0.01)
        asyncio.get_running_loop().call_soon(event.set)
        return missed, await wait_event(event, 10)

    assert asyncio.run(scenario()) == (False, True)
