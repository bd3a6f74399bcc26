"""Byte layouts of the programming sequence."""

from __future__ import annotations

import zlib

import pytest

from redstone_agent.uds import blocks


def test_block_counter_starts_at_one_and_wraps_to_zero() -> None:
    assert [blocks.block_counter(i) for i in (0, 1, 254, 255, 256, 511)] == [1, 2, 255, 0, 1, 0]


def test_block_length_includes_sid_and_counter() -> None:
    assert blocks.data_per_block(0xFFF) == 0xFFD
    with pytest.raises(ValueError, match="unusable block length"):
        blocks.data_per_block(2)


def test_iter_blocks_covers_the_data_and_can_start_late() -> None:
    data = bytes(range(10))
    assert list(blocks.iter_blocks(data, 4)) == [(0, data[:4]), (1, data[4:8]), (2, data[8:])]
    assert list(blocks.iter_blocks(data, 4, start=2)) == [(2, data[8:])]


def test_address_and_length_format() -> None:
    assert blocks.address_and_length(0x10000, 0x800, 4, 4).hex() == "440001000000000800"
    assert blocks.address_and_length(0x1234, 0x56, 2, 1).hex() == "12123456"


def test_payload_encoding() -> None:
    plain = blocks.encode_payload(b"abc" * 100, "none")
    assert (plain.data, plain.data_format) == (b"abc" * 100, 0x00)
    packed = blocks.encode_payload(b"abc" * 100, "zlib")
    assert packed.data_format == 0x10 and zlib.decompress(packed.data) == b"abc" * 100


def test_crc32_is_big_endian_zlib_crc() -> None:
    assert blocks.crc32(b"123456789") == bytes.fromhex("cbf43926")
