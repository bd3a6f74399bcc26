"""The hardened someipyd (redstone_agent.someip.someipyd) against hostile datagrams.

A real daemon process on loopback, our real binding offering the control
service through it, and a raw UDP socket sending what scapy encodes. Each
test names the someipy 2.1.2 behaviour it guards against: with the stock
daemon (``someipyd``) every one of them fails.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from redstone_agent.someip.binding import (
    RETURN_MALFORMED,
    RETURN_UNKNOWN_METHOD,
    RETURN_UNKNOWN_SERVICE,
    RETURN_WRONG_INTERFACE_VERSION,
    RETURN_WRONG_PROTOCOL_VERSION,
)
from redstone_agent.someip.client import SubClient
from redstone_agent.someip.errors import MalformedPayload, RemoteError
from redstone_agent.someip.interface import ResultCode
from redstone_agent.someip.messages import Response
from redstone_agent.someip.someipy_binding import SomeipyStack
from tests.unit.someip.daemon_support import (
    ECHO,
    INSTANCE,
    LOOPBACK,
    REFUSE,
    SD_ADDRESS,
    Daemon,
    RawPeer,
    body,
    free_udp_port,
    hardened_someipyd,
    offered,
    request,
)

pytest.importorskip("someipy")

ERROR = 0x81
RESPONSE = 0x80


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with hardened_someipyd(tmp_path_factory.mktemp("someipyd")) as running:
        yield running


def run(daemon: Daemon, scenario_for_peer) -> None:  # type: ignore[no-untyped-def]
    async def scenario() -> None:
        async with offered(daemon) as endpoint:
            peer = RawPeer(endpoint)
            try:
                await scenario_for_peer(peer)
            finally:
                peer.close()

    asyncio.run(scenario())


def test_two_messages_in_one_datagram_are_each_answered(daemon: Daemon) -> None:
    """someipy kept the second message in its stream buffer and answered only the first."""

    async def scenario(peer: RawPeer) -> None:
        peer.send(request(ECHO, b"one", session=1) + request(ECHO, b"two", session=2))
        answers = await peer.answers(2)
        assert sorted((a.session_id, body(a)) for a in answers) == [
            (1, b"one"),
            (2, b"two"),
        ]
        answer = await peer.call(ECHO, b"after", session=3)
        assert body(answer) == b"after"

    run(daemon, scenario)


def test_a_stray_byte_never_desyncs_the_next_request(daemon: Daemon) -> None:
    """someipy carried the byte into the next datagram and misread every header after it."""

    async def scenario(peer: RawPeer) -> None:
        peer.send(b"\x00")
        for session in range(10, 13):
            answer = await peer.call(ECHO, b"still here", session=session)
            assert (answer.msg_type, body(answer)) == (RESPONSE, b"still here")

    run(daemon, scenario)


def _lying_length(datagram: bytes, length: int) -> bytes:
    return datagram[:4] + struct.pack(">I", length) + datagram[8:]


BAD_FRAMING = {
    "trailing garbage": request(ECHO, b"x", session=20) + b"\xde\xad",
    "length runs past the datagram": _lying_length(request(ECHO, b"abc", session=20), 4096),
    "length below the header": _lying_length(request(ECHO, b"abc", session=20), 3),
    "length one short": _lying_length(request(ECHO, b"abcd", session=20), 8 + 3),
    "truncated header": request(ECHO, b"", session=20)[:11],
    "second message truncated": request(ECHO, b"a", session=20) + request(ECHO, b"bbbb")[:18],
}


@pytest.mark.parametrize("datagram", BAD_FRAMING.values(), ids=BAD_FRAMING.keys())
def test_a_badly_framed_datagram_is_dropped_whole_and_the_next_is_answered(
    daemon: Daemon, datagram: bytes
) -> None:
    async def scenario(peer: RawPeer) -> None:
        peer.send(datagram)
        peer.send(request(ECHO, b"next", session=21))
        answer = await peer.answer()  # nothing for session 20 came first
        assert (answer.session_id, body(answer)) == (21, b"next")

    run(daemon, scenario)


def test_a_foreign_protocol_version_is_refused_with_an_error(daemon: Daemon) -> None:
    async def scenario(peer: RawPeer) -> None:
        peer.send(request(ECHO, b"v2", session=30, protocol_version=2))
        answer = await peer.answer()
        assert (answer.session_id, answer.msg_type, answer.retcode) == (
            30,
            ERROR,
            RETURN_WRONG_PROTOCOL_VERSION,
        )
        assert (await peer.call(ECHO, b"ok", session=31)).retcode == 0

    run(daemon, scenario)


def test_an_unknown_method_is_answered_with_e_unknown_method(daemon: Daemon) -> None:
    """someipyd dropped requests for method ids it did not know without a word."""

    async def scenario(peer: RawPeer) -> None:
        answer = await peer.call(0x0777, b"", session=40)
        assert (answer.msg_type, answer.retcode) == (ERROR, RETURN_UNKNOWN_METHOD)
        assert (answer.srv_id, answer.sub_id, answer.client_id) == (0x5244, 0x0777, 0x4242)

    run(daemon, scenario)


def test_an_unsupported_interface_version_is_refused(daemon: Daemon) -> None:
    async def scenario(peer: RawPeer) -> None:
        peer.send(request(ECHO, b"", session=50, interface_version=2))
        answer = await peer.answer()
        assert (answer.session_id, answer.msg_type, answer.retcode) == (
            50,
            ERROR,
            RETURN_WRONG_INTERFACE_VERSION,
        )

    run(daemon, scenario)


def test_an_unknown_service_on_our_port_is_refused(daemon: Daemon) -> None:
    async def scenario(peer: RawPeer) -> None:
        peer.send(request(ECHO, b"", session=60, service=0x1234))
        answer = await peer.answer()
        assert (answer.session_id, answer.msg_type, answer.retcode) == (
            60,
            ERROR,
            RETURN_UNKNOWN_SERVICE,
        )

    run(daemon, scenario)


def test_unknown_message_types_are_dropped_and_the_next_request_answered(daemon: Daemon) -> None:
    async def scenario(peer: RawPeer) -> None:
        for kind in (0x42, 0x20, 0xFF, 0x01, 0x80, 0x81, 0x02):
            peer.send(request(ECHO, b"odd", session=70, message_type=kind))
        answer = await peer.call(ECHO, b"fine", session=71)
        assert body(answer) == b"fine"

    run(daemon, scenario)


def test_a_handler_refusal_travels_as_message_type_error(daemon: Daemon) -> None:
    """someipy sent every answer as RESPONSE (0x80), whatever its return code."""

    async def scenario(peer: RawPeer) -> None:
        answer = await peer.call(REFUSE, b"", session=80)
        assert (answer.msg_type, answer.retcode) == (ERROR, RETURN_MALFORMED)
        assert Response.decode(body(answer)).code is ResultCode.MALFORMED

    run(daemon, scenario)


def test_the_daemon_log_names_what_it_dropped(daemon: Daemon, tmp_path: Path) -> None:
    """Dropped datagrams are visible to an operator (rate-limited, one line)."""

    async def scenario(peer: RawPeer) -> None:
        peer.send(b"\x01\x02\x03")
        await peer.call(ECHO, b"", session=90)

    run(daemon, scenario)
    assert "dropped a datagram" in daemon.log.read_text()


FOREIGN = "127.0.0.3"
FOREIGN_ANSWERS = {
    # method id -> (message type, return code, payload) another stack answers with
    0x0001: (RESPONSE, 0x00, Response(ResultCode.OK, body=b"fine").encode()),
    0x0002: (ERROR, RETURN_UNKNOWN_METHOD, b""),
    0x0003: (ERROR, 0x42, b""),  # service-specific (0x20-0x5E)
    0x0004: (ERROR, RETURN_WRONG_INTERFACE_VERSION, b"\xff"),
    0x0005: (ERROR, RETURN_MALFORMED, b""),
}


async def foreign_stack(sd_port: int, stop: asyncio.Event) -> None:
    """Another vendor's SOME/IP stack, built from scapy: SD offers + canned answers."""
    from scapy.contrib.automotive.someip import (
        SD,
        SOMEIP,
        SDEntry_Service,
        SDOption_IP4_EndPoint,
    )

    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind((FOREIGN, 0))
    server.setblocking(False)
    port = server.getsockname()[1]
    sd = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sd.bind((FOREIGN, 0))
    sd.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(FOREIGN))
    offer = SOMEIP(srv_id=0xFFFF, sub_id=0x8100, msg_type=2, session_id=1) / SD(
        entry_array=[
            SDEntry_Service(
                type=1, srv_id=0x5244, inst_id=INSTANCE, major_ver=1, ttl=3, index_1=0, n_opt_1=1
            )
        ],
        option_array=[SDOption_IP4_EndPoint(addr=FOREIGN, l4_proto=0x11, port=port)],
    )
    loop = asyncio.get_running_loop()

    async def announce() -> None:
        while not stop.is_set():
            sd.sendto(bytes(offer), (SD_ADDRESS, sd_port))
            await asyncio.sleep(0.3)

    announcer = asyncio.create_task(announce())
    try:
        while not stop.is_set():
            try:
                data, sender = await asyncio.wait_for(loop.sock_recvfrom(server, 65536), 0.2)
            except TimeoutError:
                continue
            asked = SOMEIP(data)
            kind, code, payload = FOREIGN_ANSWERS[asked.sub_id]
            asked.msg_type, asked.retcode, asked.len = kind, code, None
            answer = bytes(asked)[:16] + payload
            answer = answer[:4] + struct.pack(">I", 8 + len(payload)) + answer[8:]
            server.sendto(answer, sender)
    finally:
        announcer.cancel()
        server.close()
        sd.close()


def test_the_client_accepts_error_answers_from_other_stacks(daemon: Daemon) -> None:
    """someipyd dropped ERROR (0x81) answers, so the caller waited out its timeout; a
    service-specific return code raised inside someipy's reader and cut the caller
    off its daemon. Now each becomes a one-line error and the next call works."""

    async def scenario() -> None:
        stop = asyncio.Event()
        foreign = asyncio.create_task(foreign_stack(daemon.sd_port, stop))
        stack = SomeipyStack(str(daemon.socket_path))
        await stack.connect()
        try:
            binding = stack.client(INSTANCE, LOOPBACK, free_udp_port())
            client = SubClient(binding, "foreign")
            await client.wait_available(10.0)
            with pytest.raises(RemoteError) as unknown:
                await client.get_status()
            assert unknown.value.code == ResultCode.UNKNOWN_METHOD
            with pytest.raises(RemoteError, match="service-specific error \\(0x42\\)"):
                await binding.call(0x0003, b"", 3.0)
            with pytest.raises(RemoteError) as version:
                await binding.call(0x0004, b"", 3.0)
            assert version.value.code == ResultCode.WRONG_INTERFACE_VERSION
            with pytest.raises(MalformedPayload):
                await binding.call(0x0005, b"", 3.0)
            assert (
                await binding.call(0x0001, b"", 3.0)
                == Response(ResultCode.OK, body=b"fine").encode()
            )
        finally:
            stop.set()
            await foreign
            await stack.close()

    asyncio.run(scenario())
