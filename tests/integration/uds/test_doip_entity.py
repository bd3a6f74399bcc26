"""The simulator's DoIP entity against hostile and out-of-order traffic (raw sockets)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from redstone_agent.ecusim.config import SimConfig, SimDoIp
from redstone_agent.ecusim.runner import BackgroundSimulator
from redstone_agent.uds.doip_wire import pack_doip


@pytest.fixture
def entity() -> Iterator[BackgroundSimulator]:
    with BackgroundSimulator(SimConfig("ecu", doip=SimDoIp(tcp_port=0, udp_port=0))) as sim:
        yield sim


def exchange(port: int, data: bytes, expect: int = 1) -> list[tuple[int, bytes]]:
    """Send ``data``; collect ``expect`` DoIP messages (fewer if the entity hangs up)."""
    messages: list[tuple[int, bytes]] = []
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(data)
        buffer = b""
        while len(messages) < expect:
            chunk = sock.recv(4096)
            if not chunk:
                break
            buffer += chunk
            while len(buffer) >= 8 and len(buffer) >= 8 + int.from_bytes(buffer[4:8], "big"):
                length = int.from_bytes(buffer[4:8], "big")
                messages.append((int.from_bytes(buffer[2:4], "big"), buffer[8 : 8 + length]))
                buffer = buffer[8 + length :]
    return messages


ACTIVATE = pack_doip(0x0005, bytes.fromhex("0E00 00 00000000"))


def test_routing_activation_then_diagnostic_exchange(entity: BackgroundSimulator) -> None:
    request = ACTIVATE + pack_doip(0x8001, bytes.fromhex("0E00 0010 3E00"))
    messages = exchange(entity.doip_port, request, expect=3)
    assert messages == [
        (0x0006, bytes.fromhex("0E00 0010 10 00000000")),
        (0x8002, bytes.fromhex("0010 0E00 00")),
        (0x8001, bytes.fromhex("0010 0E00 7E00")),
    ]


def test_diagnostic_before_routing_activation_is_refused(entity: BackgroundSimulator) -> None:
    messages = exchange(entity.doip_port, pack_doip(0x8001, bytes.fromhex("0E00 0010 3E00")))
    assert messages == [(0x8003, bytes.fromhex("0010 0E00 02"))]


def test_unknown_target_address_is_refused(entity: BackgroundSimulator) -> None:
    messages = exchange(
        entity.doip_port, ACTIVATE + pack_doip(0x8001, bytes.fromhex("0E00 0099 3E00")), 2
    )
    assert messages[1] == (0x8003, bytes.fromhex("0010 0E00 03"))


@pytest.mark.parametrize(
    ("data", "nack"),
    [
        (bytes.fromhex("02 FE 8001 00000004") + b"abcd", 0x00),  # bad inverse version
        (bytes.fromhex("02 FD 8001 7FFFFFFF"), 0x02),  # endless-data attack
    ],
)
def test_garbage_gets_a_generic_nack_and_a_hang_up(
    entity: BackgroundSimulator, data: bytes, nack: int
) -> None:
    assert exchange(entity.doip_port, data, expect=2) == [(0x0000, bytes([nack]))]


def test_unknown_payload_type_gets_nack_and_connection_survives(
    entity: BackgroundSimulator,
) -> None:
    request = pack_doip(0x4242, b"") + pack_doip(0x0007, b"")
    assert exchange(entity.doip_port, request, expect=2) == [
        (0x0000, b"\x01"),
        (0x0008, bytes.fromhex("0010")),
    ]


def test_vehicle_identification_over_udp(entity: BackgroundSimulator) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.sendto(pack_doip(0x0001, b""), ("127.0.0.1", entity.udp_port))
        data, _ = sock.recvfrom(4096)
    assert data[2:4] == b"\x00\x04"
    assert data[8:25] == b"REDSTONESIM000001"
    assert data[25:27] == b"\x00\x10"
