"""Datagram framing (someip.framing) against scapy's independent encoder."""

from __future__ import annotations

import pytest
from scapy.contrib.automotive.someip import SOMEIP
from scapy.packet import Raw

from redstone_agent.someip.errors import MalformedDatagram
from redstone_agent.someip.framing import Header, Message, error_answer, split_datagram


def scapy_message(method: int, payload: bytes, session: int = 1) -> bytes:
    packet = SOMEIP(srv_id=0x5244, sub_id=method, client_id=9, session_id=session)
    return bytes(packet / Raw(payload))


def test_batched_messages_split_exactly_as_scapy_encoded_them() -> None:
    datagram = scapy_message(1, b"abc", 1) + scapy_message(2, b"", 2) + scapy_message(3, b"z", 3)
    messages = split_datagram(datagram)
    assert [(m.header.method_id, m.header.session_id, m.payload) for m in messages] == [
        (1, 1, b"abc"),
        (2, 2, b""),
        (3, 3, b"z"),
    ]
    assert b"".join(m.encode() for m in messages) == datagram


@pytest.mark.parametrize(
    ("datagram", "reason"),
    [
        (b"", "empty"),
        (b"\x00", "truncated header"),
        (scapy_message(1, b"x") + b"\x00", "trailing bytes"),
        (scapy_message(1, b"abc")[:-1], "past the datagram"),
        (scapy_message(1, b"")[:4] + b"\x00\x00\x00\x07" + b"\x00" * 8, "below 8"),
    ],
)
def test_a_badly_framed_datagram_is_refused_whole(datagram: bytes, reason: str) -> None:
    with pytest.raises(MalformedDatagram, match=reason):
        split_datagram(datagram)


def test_an_error_answer_copies_the_request_ids_and_says_error() -> None:
    request = Header(0x5244, 0x0777, 9, 5, 2, 1, 0x00, 0x00)
    answer = SOMEIP(error_answer(request, 0x03).encode())
    assert (answer.srv_id, answer.sub_id, answer.client_id, answer.session_id) == (
        0x5244,
        0x0777,
        9,
        5,
    )
    assert (answer.proto_ver, answer.msg_type, answer.retcode, answer.len) == (1, 0x81, 0x03, 8)
    assert Message(request, b"").encode() == bytes(
        SOMEIP(srv_id=0x5244, sub_id=0x0777, client_id=9, session_id=5, proto_ver=2)
    )
