"""someipy's hot paths, patched (docs/someip.md §10.1): same messages, same checks,
same cancellation, less work per message."""

from __future__ import annotations

import asyncio
import logging
import socket
from types import SimpleNamespace
from typing import Any

import pytest
from someipy._internal._daemon import someipy_daemon_client, uds_messages
from someipy._internal._daemon.uds_messages import FindServiceRequest
from someipy.someipy_logging import get_someipy_log_level, set_someipy_log_level

from redstone_agent.someip import someipy_hotpath
from redstone_agent.someip.someipy_hotpath import create_uds_message, daemon_transmit, get_logger

GUARD_S = 10.0
"""Failure guard only."""


def test_install_rebinds_every_importer() -> None:
    someipy_hotpath.install()
    someipy_hotpath.install()  # idempotent
    assert uds_messages.create_uds_message is create_uds_message
    assert someipy_daemon_client.create_uds_message is create_uds_message
    assert someipy_daemon_client.get_logger is get_logger


def test_a_message_with_exactly_its_keys_is_built() -> None:
    message = create_uds_message(
        FindServiceRequest, service_id=1, instance_id=2, major_version=1, minor_version=0
    )
    assert message == {
        "type": "FindServiceRequest",
        "service_id": 1,
        "instance_id": 2,
        "major_version": 1,
        "minor_version": 0,
    }


@pytest.mark.parametrize(
    "fields",
    [
        {"service_id": 1, "instance_id": 2, "major_version": 1},
        {"service_id": 1, "instance_id": 2, "major_version": 1, "minor_version": 0, "x": 3},
    ],
    ids=["missing key", "extra key"],
)
def test_a_message_with_other_keys_is_refused_as_before(fields: dict[str, Any]) -> None:
    with pytest.raises(RuntimeError, match="Invalid data passed to create_uds_message"):
        create_uds_message(FindServiceRequest, **fields)


def test_the_logger_level_is_set_only_when_it_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    before = get_someipy_log_level()
    try:
        set_someipy_log_level(logging.WARNING)
        logger = get_logger("hotpath-test")
        assert logger.level == logging.WARNING
        assert logger.handlers  # someipy's "has a console handler" guarantee
        calls: list[int] = []
        monkeypatch.setattr(logger, "setLevel", calls.append)
        assert get_logger("hotpath-test") is logger
        assert calls == []  # no global logging cache flush per message
        set_someipy_log_level(logging.ERROR)
        get_logger("hotpath-test")
        assert calls == [logging.ERROR]
    finally:
        set_someipy_log_level(before)


async def _pipe() -> tuple[asyncio.StreamWriter, asyncio.StreamReader, asyncio.StreamWriter]:
    """Our writer, and the far end's reader (with its writer, which must stay referenced)."""
    ours, theirs = socket.socketpair()
    _reader, writer = await asyncio.open_connection(sock=ours)
    reader, far_writer = await asyncio.open_connection(sock=theirs)
    return writer, reader, far_writer


def test_the_client_transmit_loop_sends_in_order_and_stops_on_cancel() -> None:
    async def scenario() -> None:
        writer, reader, _keep = await _pipe()
        owner = SimpleNamespace(_tx_queue=asyncio.Queue())
        task = asyncio.create_task(someipy_hotpath._client_transmit(owner, writer))
        for index in range(50):
            owner._tx_queue.put_nowait(b"%03d" % index)
        received = await asyncio.wait_for(reader.readexactly(150), GUARD_S)
        assert received == b"".join(b"%03d" % i for i in range(50))
        await asyncio.wait_for(owner._tx_queue.join(), GUARD_S)
        task.cancel()
        await asyncio.wait_for(task, GUARD_S)  # ends, does not raise
        writer.close()

    asyncio.run(scenario())


def test_the_daemon_transmit_loop_ends_on_a_broken_client_and_drops_its_queue() -> None:
    class Client:
        id = 7
        closed = False

        async def send(self, data: bytes) -> None:
            raise ConnectionResetError("gone")

        async def close(self) -> None:
            self.closed = True

    async def scenario() -> None:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        daemon = SimpleNamespace(_tx_queues={7: queue}, logger=logging.getLogger("test"))
        queue.put_nowait(b"x")
        await asyncio.wait_for(daemon_transmit(daemon, Client()), GUARD_S)
        assert daemon._tx_queues == {}
        assert queue._unfinished_tasks == 0  # type: ignore[attr-defined]

    asyncio.run(scenario())


def test_a_cancelled_daemon_transmit_loop_closes_its_client() -> None:
    class Client:
        id = 3
        closed = False

        async def send(self, data: bytes) -> None:
            return

        async def close(self) -> None:
            self.closed = True

    async def scenario() -> None:
        client = Client()
        daemon = SimpleNamespace(_tx_queues={3: asyncio.Queue()}, logger=logging.getLogger("t"))
        task = asyncio.create_task(daemon_transmit(daemon, client))
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.wait_for(task, GUARD_S)
        assert client.closed
        assert daemon._tx_queues == {}

    asyncio.run(scenario())
