"""Bounded big-endian reader/writer for the payload layouts of docs/someip.md.

Every read checks the remaining length and the field's own cap first, so a
hostile or truncated payload ends in :class:`MalformedPayload`, never in an
oversized allocation or an exception type the caller does not expect.
"""

from __future__ import annotations

import struct

from redstone_agent.someip.errors import MalformedPayload
from redstone_agent.someip.interface import MAX_PAYLOAD, MAX_TEXT

_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


class Writer:
    """Appends fields; :meth:`done` enforces the payload size limit."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def u8(self, value: int) -> Writer:
        self._parts.append(_U8.pack(value))
        return self

    def u16(self, value: int) -> Writer:
        self._parts.append(_U16.pack(value))
        return self

    def u32(self, value: int) -> Writer:
        self._parts.append(_U32.pack(value))
        return self

    def u64(self, value: int) -> Writer:
        self._parts.append(_U64.pack(value))
        return self

    def fixed(self, value: bytes, length: int) -> Writer:
        if len(value) != length:
            raise ValueError(f"field needs exactly {length} bytes, got {len(value)}")
        self._parts.append(value)
        return self

    def text(self, value: str, limit: int = MAX_TEXT) -> Writer:
        raw = value.encode()
        if len(raw) > limit:
            raise ValueError(f"text field longer than {limit} bytes")
        return self.u16(len(raw)).fixed(raw, len(raw))

    def blob(self, value: bytes, limit: int = MAX_PAYLOAD) -> Writer:
        if len(value) > limit:
            raise ValueError(f"bytes field longer than {limit} bytes")
        return self.u32(len(value)).fixed(value, len(value))

    def done(self) -> bytes:
        payload = b"".join(self._parts)
        if len(payload) > MAX_PAYLOAD:
            raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
        return payload


class Reader:
    """Consumes fields in order; trailing bytes are allowed (minor-version growth)."""

    def __init__(self, payload: bytes) -> None:
        if len(payload) > MAX_PAYLOAD:
            raise MalformedPayload(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
        self._data = memoryview(payload)
        self._pos = 0

    def _take(self, length: int, what: str) -> bytes:
        end = self._pos + length
        if end > len(self._data):
            raise MalformedPayload(f"payload truncated in {what}")
        chunk = bytes(self._data[self._pos : end])
        self._pos = end
        return chunk

    def _int(self, fmt: struct.Struct, what: str) -> int:
        value: int = fmt.unpack(self._take(fmt.size, what))[0]
        return value

    def u8(self, what: str) -> int:
        return self._int(_U8, what)

    def u16(self, what: str) -> int:
        return self._int(_U16, what)

    def u32(self, what: str) -> int:
        return self._int(_U32, what)

    def u64(self, what: str) -> int:
        return self._int(_U64, what)

    def fixed(self, length: int, what: str) -> bytes:
        return self._take(length, what)

    def text(self, what: str, limit: int = MAX_TEXT) -> str:
        length = self.u16(what)
        if length > limit:
            raise MalformedPayload(f"{what} longer than {limit} bytes")
        try:
            return self._take(length, what).decode()
        except UnicodeDecodeError:
            raise MalformedPayload(f"{what} is not UTF-8") from None

    def blob(self, what: str, limit: int = MAX_PAYLOAD) -> bytes:
        length = self.u32(what)
        if length > limit:
            raise MalformedPayload(f"{what} longer than {limit} bytes")
        return self._take(length, what)

    def more(self) -> bool:
        """Whether bytes are left: fields a later minor version appended (absent from older
        senders, whose payloads then end here)."""
        return self._pos < len(self._data)

    def rest(self) -> bytes:
        """Everything not consumed yet (a response envelope's body)."""
        chunk = bytes(self._data[self._pos :])
        self._pos = len(self._data)
        return chunk

    def flag(self, what: str) -> bool:
        value = self.u8(what)
        if value > 1:
            raise MalformedPayload(f"{what} must be 0 or 1, got {value}")
        return value == 1
