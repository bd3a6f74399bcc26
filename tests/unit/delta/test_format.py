"""The header and operation records: round trips and every field's bounds."""

from __future__ import annotations

import dataclasses
import struct
import zlib

import pytest

from redstone_agent.delta.errors import DeltaFormatError
from redstone_agent.delta.format import (
    HEADER_SIZE,
    MAX_EXTENTS,
    Codec,
    DeltaHeader,
    Extent,
    OpHeader,
    OpKind,
    decode_header,
    decode_op,
    encode_header,
    encode_op,
    validate_op,
)

HEADER = DeltaHeader(4096, 10_000, b"s" * 32, 9_000, b"t" * 32)
HASH = b"h" * 32


def resealed(data: bytes) -> bytes:
    """The header with its CRC recomputed, as a forger would."""
    body = data[: HEADER_SIZE - 4]
    return body + struct.pack("<I", zlib.crc32(body))


def test_header_round_trip() -> None:
    data = encode_header(HEADER)
    assert len(data) == HEADER_SIZE
    assert decode_header(data) == HEADER
    assert HEADER.op_count == 3
    assert [HEADER.op_target_length(i) for i in range(3)] == [4096, 4096, 808]


def test_empty_target_has_no_operations() -> None:
    header = dataclasses.replace(HEADER, target_size=0)
    assert decode_header(encode_header(header)).op_count == 0


@pytest.mark.parametrize(
    ("offset", "value", "message"),
    [
        (0, b"NOTDELTA", "bad magic"),
        (8, struct.pack("<H", 2), "version 2 is not supported"),
        (10, struct.pack("<H", 1), "unknown flags"),
        (12, struct.pack("<I", 1024), "block size 1024"),
        (12, struct.pack("<I", 1 << 30), "block size"),
        (56, struct.pack("<Q", 1 << 60), "target size"),
        (16, struct.pack("<Q", 1 << 60), "source size"),
        (96, struct.pack("<Q", 4), "says 4 operations"),
    ],
)
def test_header_field_out_of_bounds(offset: int, value: bytes, message: str) -> None:
    data = bytearray(encode_header(HEADER))
    data[offset : offset + len(value)] = value
    with pytest.raises(DeltaFormatError, match=message):
        decode_header(resealed(bytes(data)))


def test_header_bit_flip_fails_crc() -> None:
    data = bytearray(encode_header(HEADER))
    data[30] ^= 1
    with pytest.raises(DeltaFormatError, match="CRC"):
        decode_header(bytes(data))


def test_header_wrong_length() -> None:
    with pytest.raises(DeltaFormatError, match="expected"):
        decode_header(b"RSDELTA\x00")


def test_op_round_trip() -> None:
    op = OpHeader(OpKind.BSDIFF, Codec.XZ, 4096, 100, HASH, (Extent(0, 5000), Extent(6000, 10)))
    data = encode_op(op)
    assert len(data) == op.encoded_size
    assert decode_op(data[:44], data[44:], HEADER, 0) == op


VALID = {
    "copy": OpHeader(OpKind.COPY, Codec.NONE, 4096, 0, HASH, (Extent(100, 4096),)),
    "zero": OpHeader(OpKind.ZERO, Codec.NONE, 4096, 0, HASH),
    "replace": OpHeader(OpKind.REPLACE, Codec.ZSTD, 4096, 10, HASH),
    "raw": OpHeader(OpKind.REPLACE, Codec.NONE, 4096, 4096, HASH),
    "bsdiff": OpHeader(OpKind.BSDIFF, Codec.ZSTD, 4096, 30, HASH, (Extent(0, 10_000),)),
    "zstd_patch": OpHeader(OpKind.ZSTD_PATCH, Codec.ZSTD, 4096, 30, HASH, (Extent(0, 10_000),)),
}


@pytest.mark.parametrize("name", VALID)
def test_valid_ops_pass(name: str) -> None:
    validate_op(VALID[name], HEADER, 0)


@pytest.mark.parametrize(
    ("op", "message"),
    [
        (dataclasses.replace(VALID["zero"], target_length=4097), "expected 4096"),
        (dataclasses.replace(VALID["replace"], payload_length=5000), "exceeds its output"),
        (dataclasses.replace(VALID["copy"], extents=(Extent(9000, 4096),)), "outside"),
        (dataclasses.replace(VALID["copy"], extents=(Extent(1 << 63, 4096),)), "outside"),
        (dataclasses.replace(VALID["copy"], extents=(Extent(0, 0),)), "outside"),
        (dataclasses.replace(VALID["copy"], extents=(Extent(0, 4095),)), "inconsistent"),
        (dataclasses.replace(VALID["zero"], extents=(Extent(0, 4096),)), "inconsistent"),
        (dataclasses.replace(VALID["zero"], codec=Codec.XZ), "inconsistent"),
        (dataclasses.replace(VALID["raw"], payload_length=10), "inconsistent"),
        (dataclasses.replace(VALID["replace"], extents=(Extent(0, 1),)), "inconsistent"),
        (dataclasses.replace(VALID["bsdiff"], extents=()), "inconsistent"),
        (dataclasses.replace(VALID["bsdiff"], payload_length=0), "inconsistent"),
        (dataclasses.replace(VALID["zstd_patch"], codec=Codec.XZ), "inconsistent"),
        (dataclasses.replace(VALID["zstd_patch"], extents=()), "inconsistent"),
        (
            dataclasses.replace(VALID["bsdiff"], extents=(Extent(0, 9000), Extent(0, 9000))),
            "reads 18000 source bytes, at most 16384",
        ),
        (
            dataclasses.replace(VALID["bsdiff"], extents=(Extent(0, 1),) * (MAX_EXTENTS + 1)),
            "extents, at most",
        ),
    ],
)
def test_invalid_ops_rejected(op: OpHeader, message: str) -> None:
    big_source = dataclasses.replace(HEADER, source_size=100_000)
    header = big_source if "source bytes" in message else HEADER
    with pytest.raises(DeltaFormatError, match=message):
        validate_op(op, header, 0)


@pytest.mark.parametrize(("kind", "codec"), [(9, 0), (1, 7)])
def test_unknown_kind_or_codec(kind: int, codec: int) -> None:
    fixed = struct.pack("<BBHII32s", kind, codec, 0, 4096, 0, HASH)
    with pytest.raises(DeltaFormatError, match="unknown"):
        decode_op(fixed, b"", HEADER, 0)
