"""The poll fast path's batcher when its lookup fails or a poll goes away.
(The lookup itself, on both databases: tests/integration/cloud/test_fastpoll_batch.py.)"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence

import pytest

from redstone_cloud.api.fastpoll import LookupRow, PollBatcher

ROW: LookupRow = (7, 3, None, dt.datetime(2030, 1, 1, tzinfo=dt.UTC))


def test_a_database_failure_sends_every_poll_of_the_batch_to_the_full_route() -> None:
    calls: list[Sequence[str]] = []

    def failing(asked: Sequence[str]) -> dict[str, LookupRow] | None:
        calls.append(asked)
        return None if len(calls) == 1 else dict.fromkeys(asked, ROW)

    batcher = PollBatcher(failing)

    async def polls() -> tuple[list[LookupRow | None], LookupRow | None]:
        first = await asyncio.gather(batcher.get("a"), batcher.get("b"))
        return first, await batcher.get("a")

    first, later = asyncio.run(polls())
    assert first == [None, None]
    assert later == ROW  # the next turn asks again
    assert calls == [["a", "b"], ["a"]]


def test_a_bug_in_the_lookup_fails_those_polls_instead_of_hanging_them() -> None:
    def broken(asked: Sequence[str]) -> dict[str, LookupRow] | None:
        raise KeyError("column")

    batcher = PollBatcher(broken)

    async def polls() -> list[LookupRow | BaseException | None]:
        return await asyncio.gather(batcher.get("a"), batcher.get("b"), return_exceptions=True)

    assert [type(r) for r in asyncio.run(polls())] == [KeyError, KeyError]


def test_a_poll_cancelled_while_waiting_leaves_the_others_answered() -> None:
    batcher = PollBatcher(lambda asked: dict.fromkeys(asked, ROW))

    async def polls() -> tuple[LookupRow | None, bool]:
        gone = asyncio.create_task(batcher.get("gone"))
        kept = asyncio.create_task(batcher.get("kept"))
        await asyncio.sleep(0)  # both are waiting for the batch
        gone.cancel()
        answer = await kept
        with pytest.raises(asyncio.CancelledError):
            await gone
        return answer, gone.cancelled()

    assert asyncio.run(polls()) == (ROW, True)
