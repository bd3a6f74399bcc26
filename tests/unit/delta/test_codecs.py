"""Payload codecs: round trips, and bombs that must not be inflated beyond the announced size."""

from __future__ import annotations

import lzma
import os
import tracemalloc

import pytest
import zstandard

from redstone_agent.delta.codecs import compress, compress_zstd, decompress, smallest
from redstone_agent.delta.errors import DeltaFormatError
from redstone_agent.delta.format import Codec

from .conftest import code_like


@pytest.mark.parametrize("codec", list(Codec))
def test_round_trip(codec: Codec) -> None:
    data = code_like(1, 100_000)
    assert decompress(codec, compress(codec, data), len(data), "t") == data


def test_smallest_prefers_compression_and_falls_back_to_none() -> None:
    assert smallest(bytes(10_000))[0] is not Codec.NONE
    incompressible = os.urandom(5000)
    assert smallest(incompressible) == (Codec.NONE, incompressible)


@pytest.mark.parametrize("codec", [Codec.ZSTD, Codec.XZ])
@pytest.mark.parametrize("announced", [1000, 99_999, 100_001])
def test_wrong_size_rejected(codec: Codec, announced: int) -> None:
    packed = compress(codec, code_like(2, 100_000))
    with pytest.raises(DeltaFormatError, match="payload"):
        decompress(codec, packed, announced, "t")


def _bomb(codec: Codec) -> bytes:
    zeros = bytes(64 << 20)
    if codec is Codec.ZSTD:
        return zstandard.ZstdCompressor(level=3).compress(zeros)
    return lzma.compress(zeros, preset=1)


@pytest.mark.parametrize("codec", [Codec.ZSTD, Codec.XZ])
def test_bomb_is_rejected_without_inflating(codec: Codec) -> None:
    bomb = _bomb(codec)
    assert len(bomb) < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(DeltaFormatError):
            decompress(codec, bomb, 1 << 20, "t")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


def test_zstd_frame_demanding_a_huge_window_is_refused() -> None:
    params = zstandard.ZstdCompressionParameters(window_log=27, write_content_size=False)
    data = code_like(3, 10_000)
    streaming = zstandard.ZstdCompressor(compression_params=params).compressobj()
    frame = streaming.compress(data) + streaming.flush()
    assert zstandard.get_frame_parameters(frame).window_size == 1 << 27
    with pytest.raises(DeltaFormatError, match="too much memory"):
        decompress(Codec.ZSTD, frame, len(data), "t")


@pytest.mark.parametrize("codec", [Codec.ZSTD, Codec.XZ])
def test_garbage_is_a_format_error(codec: Codec) -> None:
    with pytest.raises(DeltaFormatError):
        decompress(codec, b"\x00garbage" * 10, 1000, "t")


def test_source_dictionary_round_trip_and_mismatch() -> None:
    source = code_like(4, 200_000)
    block = source[50_000:120_000] + b"edit" + source[130_000:180_000]
    packed = compress_zstd(block, dictionary=source)
    assert len(packed) < len(compress(Codec.ZSTD, block)) // 10
    assert decompress(Codec.ZSTD, packed, len(block), "t", dictionary=source) == block
    # another source decodes to other bytes; the operation hash is what catches it
    other = bytes(a ^ 1 for a in source)
    assert decompress(Codec.ZSTD, packed, len(block), "t", dictionary=other) != block
