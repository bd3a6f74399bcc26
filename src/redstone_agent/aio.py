"""asyncio helpers the daemons share."""

from __future__ import annotations

import asyncio
import contextlib


async def wait_event(event: asyncio.Event, timeout_s: float) -> bool:
    """Wait until ``event`` is set or ``timeout_s`` has passed; True if it is set.

    Not ``asyncio.wait_for``: on Python 3.11 it swallows a cancellation that arrives
    while the event is being set, and the cancelled task goes on as if nothing had
    happened. The Master's step watcher is cancelled as its step ends, often just as a
    status change sets the event; it then never ended and the campaign hung (seen in
    CI under load). ``asyncio.timeout`` lets the cancellation through.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await event.wait()
    return event.is_set()
