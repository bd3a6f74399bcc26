"""Server-Sent Events for the console's live views (a campaign's progress, the log tail).

A view supplies ``tick()``, which returns the messages to send now (often none); this
module runs it every :data:`EVERY_S`, frames the messages, stops when the browser goes
away, and ends the stream when the session has expired or been signed out.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import Request
from fastapi.responses import StreamingResponse

from redstone_cloud.backend import Backend
from redstone_cloud.console import accounts
from redstone_cloud.console.web import COOKIE
from redstone_cloud.db.engine import transaction
from redstone_cloud.db.types import utcnow

EVERY_S = 1.0
"""How often a view looks for changes (one small query per look)."""
RECHECK_S = 30.0
"""How often a stream re-checks its session; a watching page keeps it from going idle."""

Message = tuple[str, str]
"""(event name, payload)."""


def frame(kind: str, payload: str) -> str:
    """One SSE message; every line of the payload is its own ``data:`` field."""
    lines = "".join(f"data: {line}\n" for line in payload.splitlines() or [""])
    return f"event: {kind}\n{lines}\n"


def respond(
    request: Request, backend: Backend, tick: Callable[[], Awaitable[list[Message]]]
) -> StreamingResponse:
    session_id = request.cookies.get(COOKIE, "")

    def signed_in() -> bool:
        with transaction(backend.sessions) as session:
            settings = backend.settings.console
            return accounts.resume(session, session_id, settings, utcnow()) is not None

    async def stream() -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        rechecked = loop.time()
        yield "retry: 3000\n\n"
        while not await request.is_disconnected():
            for kind, payload in await tick():
                yield frame(kind, payload)
                if kind == "end":
                    return
            await asyncio.sleep(EVERY_S)
            if loop.time() - rechecked >= RECHECK_S:
                rechecked = loop.time()
                if not await asyncio.to_thread(signed_in):
                    yield frame("end", "Your session has ended; sign in again.")
                    return
                yield ": still here\n\n"  # keeps proxies from closing a quiet stream

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
