"""Fuzz the ECU simulator's DoIP framing (TCP data channel, UDP discovery) and the ISO-TP side.

Properties: whatever bytes a tester sends on the TCP channel, the entity
answers only with well-formed DoIP frames, hangs up after a NACKed header
without reading the length it declared, and answers every well-framed
diagnostic message with exactly one ACK or NACK; discovery answers exactly
the identification requests meant for it, with a response the tester's
parser reads back (and the tester's parser survives any datagram); over
ISO-TP, random CAN frames never stop the simulator answering the next request.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from redstone_agent.ecusim import doip_server
from redstone_agent.ecusim.config import SimConfig, SimDoCan, SimDoIp
from redstone_agent.ecusim.doip_server import MAX_PAYLOAD, DoIpEntity, parse_header
from redstone_agent.ecusim.ecu import SimulatedEcu
from redstone_agent.uds import doip_wire as wire
from tests.fuzz.profile import fuzz, peak_memory_below

ENTITY = 0x0010
TESTER = 0x0E00
SETTINGS = SimDoIp(logical_address=ENTITY)
RESPONSE_TYPES = {
    wire.GENERIC_NACK,
    wire.ROUTING_RESPONSE,
    wire.ALIVE_RESPONSE,
    wire.DIAGNOSTIC,
    wire.DIAG_ACK,
    wire.DIAG_NACK,
}

# doipclient logs a warning for every bad header the tester's parser sees.
logging.getLogger("doipclient").setLevel(logging.CRITICAL)


def make_entity() -> DoIpEntity:
    ecu = SimulatedEcu(
        SimConfig("fuzz", doip=SETTINGS, erase_time=0.0, reset_time=0.0),
        random_bytes=lambda n: bytes(range(1, n + 1)),
    )
    return DoIpEntity(ecu, SETTINGS)


class Writer:
    """The StreamWriter surface the entity uses, recording what it sends."""

    def __init__(self) -> None:
        self.sent = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.sent += data

    async def drain(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True


def frames(data: bytes) -> list[tuple[int, bytes]]:
    """Split what the entity sent into (type, payload), asserting each frame is well formed."""
    out = []
    at = 0
    while at < len(data):
        assert len(data) - at >= wire.HEADER, "entity sent a truncated header"
        parsed = parse_header(data[at : at + wire.HEADER])
        assert not isinstance(parsed, int), f"entity sent a bad header {data[at : at + 8].hex()}"
        _version, payload_type, length = parsed
        assert payload_type in RESPONSE_TYPES
        payload = data[at + wire.HEADER : at + wire.HEADER + length]
        assert len(payload) == length, "entity sent a frame shorter than its length"
        out.append((payload_type, payload))
        at += wire.HEADER + length
    return out


def converse(stream: bytes) -> list[tuple[int, bytes]]:
    """Feed ``stream`` to one TCP connection, then EOF; the frames the entity answered."""
    entity = make_entity()
    writer = Writer()

    async def run() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(stream)
        reader.feed_eof()
        await asyncio.wait_for(entity._connection(reader, writer), 5)  # type: ignore[arg-type]

    asyncio.run(run())
    assert writer.closed
    return frames(bytes(writer.sent))


def frame(payload_type: int, payload: bytes, version: int = wire.DOIP_VERSION) -> bytes:
    return wire.pack_doip(payload_type, payload, version)


routing = st.builds(
    lambda source, extra: frame(
        wire.ROUTING_REQUEST, source.to_bytes(2, "big") + b"\x00" + bytes(4) + extra
    ),
    st.sampled_from([TESTER, 0x0E80]),
    st.sampled_from([b"", bytes(4), b"\x01"]),
)
diagnostics = st.builds(
    lambda source, target, uds: frame(
        wire.DIAGNOSTIC, source.to_bytes(2, "big") + target.to_bytes(2, "big") + uds
    ),
    st.sampled_from([TESTER, 0x0E80]),
    st.sampled_from([ENTITY, 0x0011]),
    st.binary(max_size=12)
    | st.sampled_from([b"\x10\x03", b"\x3e\x00", b"\x22\xf1\x89", b"\x11\x01"]),
)
well_framed = st.one_of(
    routing,
    diagnostics,
    st.just(frame(wire.ALIVE_REQUEST, b"")),
    st.builds(frame, st.integers(0, 0xFFFF), st.binary(max_size=20)),
)


@fuzz(200)
@given(st.lists(well_framed, max_size=8))
def test_every_well_framed_diagnostic_gets_one_ack_or_nack(messages: list[bytes]) -> None:
    answered = converse(b"".join(messages))
    diagnostics_sent = sum(m[2:4] == wire.DIAGNOSTIC.to_bytes(2, "big") for m in messages)
    acks = [t for t, _ in answered if t in (wire.DIAG_ACK, wire.DIAG_NACK)]
    short = [
        m
        for m in messages
        if m[2:4] == wire.DIAGNOSTIC.to_bytes(2, "big") and len(m) < wire.HEADER + 5
    ]
    assert len(acks) == diagnostics_sent - len(short)


@fuzz(300)
@given(
    st.one_of(
        st.binary(max_size=80),
        st.tuples(st.lists(well_framed, max_size=4), st.binary(max_size=40)).map(
            lambda t: b"".join(t[0]) + t[1]
        ),
    )
)
@example(b"\x02\xfd\x80\x01\xff\xff\xff\xff")  # 4 GiB declared: NACK, nothing read
@example(b"\x02\xfc\x80\x01\x00\x00\x00\x00")  # inverse version wrong
@example(frame(wire.ROUTING_REQUEST, b"\x0e"))  # routing request too short
@example(frame(wire.DIAGNOSTIC, b"\x0e\x00\x00\x10"))  # diagnostic without UDS data
def test_any_byte_stream_gets_well_formed_frames_only(stream: bytes) -> None:
    answered = converse(stream)
    if answered and answered[-1][0] == wire.GENERIC_NACK:
        code = answered[-1][1][0]
        assert code in (
            doip_server.NACK_PATTERN,
            doip_server.NACK_TYPE,
            doip_server.NACK_TOO_LARGE,
            doip_server.NACK_LENGTH,
        )


def test_huge_declared_length_is_refused_without_reading_it() -> None:
    header = frame(wire.DIAGNOSTIC, b"")[:4] + (MAX_PAYLOAD + 1).to_bytes(4, "big")
    with peak_memory_below(1 << 20):
        answered = converse(header + bytes(1000))
    assert answered == [(wire.GENERIC_NACK, bytes([doip_server.NACK_TOO_LARGE]))]


@fuzz(200)
@given(st.binary(min_size=8, max_size=8))
def test_header_parse_is_total(header: bytes) -> None:
    parsed = parse_header(header)
    if isinstance(parsed, int):
        assert parsed in (doip_server.NACK_PATTERN, doip_server.NACK_TOO_LARGE)
    else:
        version, payload_type, length = parsed
        assert header == bytes([version, version ^ 0xFF]) + payload_type.to_bytes(
            2, "big"
        ) + length.to_bytes(4, "big")
        assert length <= MAX_PAYLOAD


# --------------------------------------------------------------------- discovery


class Transport:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def sendto(self, data: bytes, addr: Any) -> None:
        self.sent.append(data)


identification_requests = st.one_of(
    st.just(wire.vehicle_identification_request()),
    st.just(frame(wire.VEHICLE_ID_REQUEST_EID, bytes.fromhex(SETTINGS.eid))),
    st.just(frame(wire.VEHICLE_ID_REQUEST_VIN, SETTINGS.vin.encode())),
    st.builds(frame, st.sampled_from([1, 2, 3]), st.binary(max_size=20)),
    st.binary(max_size=40),
)


@fuzz(300)
@given(identification_requests)
def test_discovery_answers_only_requests_for_it(datagram: bytes) -> None:
    entity = make_entity()
    discovery = doip_server._Discovery(entity)
    transport = Transport()
    discovery.connection_made(transport)  # type: ignore[arg-type]
    discovery.datagram_received(datagram, ("127.0.0.1", 13400))
    for answer in transport.sent:
        assert wire.identified_address(answer) == ENTITY
    if datagram in (
        wire.vehicle_identification_request(),
        frame(wire.VEHICLE_ID_REQUEST_EID, bytes.fromhex(SETTINGS.eid)),
        frame(wire.VEHICLE_ID_REQUEST_VIN, SETTINGS.vin.encode()),
    ):
        assert len(transport.sent) == 1


@fuzz(300)
@given(
    st.one_of(
        st.binary(max_size=60),
        st.builds(frame, st.sampled_from([0, 4, 6, 8, 0x8002, 0x4002]), st.binary(max_size=40)),
    )
)
@example(bytes.fromhex("02fd000400000000"))  # identification response with no payload
@example(frame(wire.VEHICLE_ID_RESPONSE, bytes(20)))
def test_tester_discovery_parser_survives_any_datagram(datagram: bytes) -> None:
    """Any host may answer a broadcast: the tester reads an address or None, never crashes."""
    address = wire.identified_address(datagram)
    assert address is None or 0 <= address <= 0xFFFF


# --------------------------------------------------------------------- ISO-TP


@pytest.fixture(scope="module")
def docan_ecu() -> Any:
    """The simulator's real ISO-TP server on python-can's in-process virtual bus."""
    can = pytest.importorskip("can")
    isotp = pytest.importorskip("isotp")
    from redstone_agent.ecusim.isotp_server import serve_docan
    from redstone_agent.uds.docan import isotp_address, isotp_params

    settings = SimDoCan(interface="virtual", channel="fuzz-isotp", block_size=8)
    ecu = SimulatedEcu(SimConfig("fuzz", docan=settings), random_bytes=bytes)
    loop = asyncio.new_event_loop()
    stop, ready = asyncio.Event(), threading.Event()

    async def serve() -> None:
        started = asyncio.Event()
        task = asyncio.create_task(serve_docan(ecu, settings, stop, started))
        await started.wait()
        ready.set()
        await task

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(5)
    bus = can.Bus(interface="virtual", channel="fuzz-isotp", receive_own_messages=False)
    tester = isotp.CanStack(bus, address=isotp_address(settings), params=isotp_params(settings))
    tester.start()
    yield bus, tester, can
    tester.stop()
    bus.shutdown()
    loop.call_soon_threadsafe(stop.set)
    thread.join(5)


def _ask(tester: Any, request: bytes) -> bytes | None:
    tester.send(request)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        answer = tester.recv(block=True, timeout=0.05)
        if answer is not None:
            return bytes(answer)
    return None


@fuzz(15, deadline_ms=10_000)
@given(
    st.lists(
        st.tuples(st.binary(min_size=1, max_size=8), st.sampled_from([0x7E0, 0x7E8, 0x123])),
        min_size=1,
        max_size=10,
    )
)
def test_isotp_garbage_frames_never_stop_the_next_answer(
    docan_ecu: Any, garbage: list[tuple[bytes, int]]
) -> None:
    """Random CAN frames on the ECU's ids (bad PCI, lengths that lie, stray flow control)."""
    bus, tester, can = docan_ecu
    settings = SimDoCan(interface="virtual", channel="fuzz-isotp")
    for data, arbitration_id in garbage:
        can_id = settings.tx_id if arbitration_id == 0x7E0 else arbitration_id
        bus.send(can.Message(arbitration_id=can_id, data=data, is_extended_id=False))
    time.sleep(0.02)
    while tester.recv() is not None:  # drop whatever the garbage provoked
        pass
    # A broken multi-frame reception times out on the ECU side (N_Cr) before it listens again.
    answer = None
    for _ in range(3):
        answer = _ask(tester, b"\x3e\x00")
        if answer == b"\x7e\x00":
            break
    assert answer == b"\x7e\x00"
