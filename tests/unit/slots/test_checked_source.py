"""CheckedSource: a signed source file is read up to its length only, and hashed on the way."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from redstone_agent.slots import SourceDigest, SourceMismatch
from redstone_agent.slots.imaging import CheckedSource
from redstone_agent.transfer import ByteSource

SIGNED = bytes(range(256)) * 40  # 10 240 bytes


class Stream(ByteSource):
    """An unsized stream (like a chunked HTTP body) in 1000-byte chunks."""

    def __init__(self, data: bytes, *, announce: bool = False) -> None:
        super().__init__("stream://test", cancel=None, max_bytes=None, chunk_size=1000)
        self._data = data
        self.size = len(data) if announce else None

    def _chunks(self) -> Iterator[bytes]:
        for start in range(0, len(self._data), 1000):
            yield self._data[start : start + 1000]


def digest(data: bytes = SIGNED) -> SourceDigest:
    return SourceDigest(hashlib.sha256(data).hexdigest(), len(data))


def consume(source: CheckedSource, read: int = 4096) -> bytes:
    out = bytearray()
    buffer = bytearray(read)
    while count := source.readinto(buffer):
        out += buffer[:count]
    return bytes(out)


def test_the_signed_file_passes_through_unchanged() -> None:
    checked = CheckedSource(Stream(SIGNED, announce=True), digest())
    assert consume(checked) == SIGNED
    checked.verify()


def test_a_longer_stream_is_cut_at_the_signed_length_and_refused() -> None:
    other = bytes(reversed(SIGNED)) + b"x" * 50_000
    checked = CheckedSource(Stream(other), digest())
    assert len(consume(checked, read=3000)) == len(SIGNED)
    assert checked.received == len(SIGNED)
    with pytest.raises(SourceMismatch, match="not the verified"):
        checked.verify()
    assert checked.received == len(SIGNED)


def test_a_surplus_after_the_signed_bytes_is_never_read() -> None:
    """Only an unsized stream can get here; the consumer saw exactly the signed file."""
    checked = CheckedSource(Stream(SIGNED + b"junk" * 1000), digest())
    assert consume(checked) == SIGNED
    checked.verify()


def test_a_short_stream_is_refused() -> None:
    checked = CheckedSource(Stream(SIGNED[:-1]), digest())
    consume(checked)
    with pytest.raises(SourceMismatch, match=f"ended after {len(SIGNED) - 1} bytes"):
        checked.verify()


def test_an_announced_size_other_than_the_signed_one_is_refused_before_reading() -> None:
    raw = Stream(SIGNED + b"!", announce=True)
    with pytest.raises(SourceMismatch, match=f"the verified file is {len(SIGNED)}"):
        CheckedSource(raw, digest())
    assert raw.received == 0


def test_bytes_the_consumer_left_are_still_hashed() -> None:
    flipped = bytearray(SIGNED)
    flipped[-1] ^= 1
    checked = CheckedSource(Stream(bytes(flipped)), digest())
    checked.readinto(bytearray(100))  # e.g. a decoder that stopped at its end marker
    with pytest.raises(SourceMismatch, match="not the verified"):
        checked.verify()
