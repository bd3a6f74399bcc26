"""SOME/IP message framing of one UDP datagram (docs/someip.md §4.1). Pure code, no I/O.

A datagram holds one or more whole SOME/IP messages back to back (the
protocol allows batching); a message never spans two datagrams. So each
datagram is parsed on its own, from its first byte, and either every message
in it is well framed or the whole datagram is refused: after a length field
that lies, nothing in the rest of the datagram can be trusted to start where
it seems to. Nothing carries over into the next datagram.

What *content* is acceptable (protocol version, message type, method id) is
the receiver's decision; :func:`error_answer` builds its refusal.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace

from redstone_agent.someip.binding import MESSAGE_ERROR, PROTOCOL_VERSION
from redstone_agent.someip.errors import MalformedDatagram

HEADER = struct.Struct(">HHIHHBBBB")
"""Message id (service, method), length, request id (client, session),
protocol version, interface version, message type, return code."""
HEADER_SIZE = HEADER.size
LENGTH_COVERED = 8
"""The length field counts the 8 header bytes after itself, then the payload."""


@dataclass(frozen=True)
class Header:
    service_id: int
    method_id: int
    client_id: int
    session_id: int
    protocol_version: int
    interface_version: int
    message_type: int
    return_code: int


@dataclass(frozen=True)
class Message:
    header: Header
    payload: bytes

    def encode(self) -> bytes:
        h = self.header
        length = LENGTH_COVERED + len(self.payload)
        return (
            HEADER.pack(
                h.service_id,
                h.method_id,
                length,
                h.client_id,
                h.session_id,
                h.protocol_version,
                h.interface_version,
                h.message_type,
                h.return_code,
            )
            + self.payload
        )


def split_datagram(data: bytes) -> list[Message]:
    """Every message of one datagram, or :class:`MalformedDatagram` for the whole of it.

    Refused: an empty datagram, a header cut short, a length below 8 or
    beyond the datagram's end, and any bytes after the last message.
    """
    if not data:
        raise MalformedDatagram("empty datagram")
    messages: list[Message] = []
    offset = 0
    while offset < len(data):
        left = len(data) - offset
        if left < HEADER_SIZE:
            where = "trailing bytes" if messages else "truncated header"
            raise MalformedDatagram(f"{where}: {left} bytes at offset {offset}")
        fields = HEADER.unpack_from(data, offset)
        length = fields[2]
        if length < LENGTH_COVERED:
            raise MalformedDatagram(f"length field {length} at offset {offset} is below 8")
        end = offset + LENGTH_COVERED + length
        if end > len(data):
            raise MalformedDatagram(
                f"length field {length} at offset {offset} runs {end - len(data)} bytes "
                "past the datagram"
            )
        header = Header(fields[0], fields[1], *fields[3:])
        messages.append(Message(header, bytes(data[offset + HEADER_SIZE : end])))
        offset = end
    return messages


def error_answer(request: Header, return_code: int, payload: bytes = b"") -> Message:
    """The ERROR message refusing *request*: its ids copied, our protocol version."""
    header = replace(
        request,
        protocol_version=PROTOCOL_VERSION,
        message_type=MESSAGE_ERROR,
        return_code=return_code,
    )
    return Message(header, payload)
