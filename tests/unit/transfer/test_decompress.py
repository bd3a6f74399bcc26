"""decompressing(): magic detection, bounded output, corrupt and truncated input."""

from __future__ import annotations

import io
import lzma
import os
from collections.abc import Callable, Iterator

import pytest
import zstandard

from redstone_agent.transfer import CorruptSource, Decompressed, decompressing, detect

DATA = os.urandom(200_000) + bytes(300_000) + b"tail"


def xz(data: bytes) -> bytes:
    return lzma.compress(data, preset=0)


def zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=1).compress(data)


def pieces(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize("compress", [xz, zstd])
@pytest.mark.parametrize("piece", [1, 7, 65536, 10**7])
def test_round_trip_whatever_the_chunking(compress: Callable[[bytes], bytes], piece: int) -> None:
    packed = compress(DATA)
    if piece == 1:
        packed_pieces: Iterator[bytes] = pieces(packed[:64], 1)
        rest = packed[64:]
        stream = iter([*packed_pieces, rest])
    else:
        stream = pieces(packed, piece)
    assert b"".join(decompressing(stream)) == DATA


@pytest.mark.parametrize(
    ("head", "kind"),
    [(xz(b"x")[:6], "xz"), (zstd(b"x")[:4], "zstd"), (b"hsqs", "none"), (b"", "none")],
)
def test_detect(head: bytes, kind: str) -> None:
    assert detect(head) == kind


@pytest.mark.parametrize("data", [b"", b"abc", DATA])
def test_plain_data_passes_through_unchanged(data: bytes) -> None:
    assert b"".join(decompressing(pieces(data, 4096))) == data


def test_concatenated_streams_and_frames_are_all_decoded() -> None:
    assert b"".join(decompressing([xz(b"one"), xz(b"two")])) == b"onetwo"
    assert b"".join(decompressing([zstd(b"one") + zstd(b"two")])) == b"onetwo"


def test_output_is_bounded_even_for_a_decompression_bomb() -> None:
    bomb = zstandard.ZstdCompressor(level=19).compress(bytes(64 << 20))
    assert len(bomb) < 10_000
    total = 0
    for block in decompressing([bomb], out_size=1 << 20):
        assert len(block) <= 1 << 20
        total += len(block)
    assert total == 64 << 20


@pytest.mark.parametrize(
    ("packed", "message"),
    [
        (xz(DATA)[:-100], "xz data is corrupt or truncated"),
        (xz(DATA)[:12] + b"\x00garbage" * 100, "xz data is corrupt"),
        (zstd(DATA)[:4] + b"\xffgarbage" * 100, "zstd data is corrupt"),
    ],
    ids=["xz-truncated", "xz-garbage", "zstd-garbage"],
)
def test_corrupt_input_is_a_clear_error(packed: bytes, message: str) -> None:
    with pytest.raises(CorruptSource, match=message):
        b"".join(decompressing(pieces(packed, 1000)))


def drain_readinto(reader: Decompressed, size: int) -> bytes:
    out = bytearray()
    buffer = bytearray(size)
    while count := reader.readinto(buffer):
        out += buffer[:count]
    return bytes(out)


@pytest.mark.parametrize("compress", [xz, zstd, lambda data: data], ids=["xz", "zstd", "plain"])
@pytest.mark.parametrize("source_kind", ["readinto", "chunks"])
def test_readinto_path_matches(compress: Callable[[bytes], bytes], source_kind: str) -> None:
    packed = compress(DATA)
    source: object = io.BytesIO(packed) if source_kind == "readinto" else pieces(packed, 5000)
    reader = decompressing(source)  # type: ignore[arg-type]
    assert drain_readinto(reader, 70_000) == DATA
    assert reader.kind == ("none" if packed is DATA else "xz" if packed[:1] == b"\xfd" else "zstd")


def test_readinto_reports_corruption() -> None:
    with pytest.raises(CorruptSource, match="xz data is corrupt"):
        drain_readinto(decompressing(io.BytesIO(xz(DATA)[:-100])), 65536)


def test_tiny_plain_input_through_readinto() -> None:
    assert drain_readinto(decompressing(io.BytesIO(b"abc")), 2) == b"abc"
    assert drain_readinto(decompressing(io.BytesIO(b"")), 2) == b""
