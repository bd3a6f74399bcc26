"""The delta file format: header and operation records, encoded and decoded without I/O.

The byte layout is specified in docs/delta.md; this module is its single
implementation. Decoding validates every field against limits derived from
the header, so a hostile delta is rejected before anything is allocated or
read from the source.
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass

from redstone_agent.delta.errors import DeltaFormatError

MAGIC = b"RSDELTA\x00"
FORMAT_VERSION = 1

MIN_BLOCK_SIZE = 4096
MAX_BLOCK_SIZE = 16 << 20
DEFAULT_BLOCK_SIZE = 1 << 20
MAX_TARGET_SIZE = 1 << 44
MAX_EXTENTS = 16
#: A BSDIFF or ZSTD_PATCH operation may read at most this many block sizes of source.
SOURCE_FACTOR = 4

_HEADER = struct.Struct("<8sHHIQ32sQ32sQ")
_CRC = struct.Struct("<I")
HEADER_SIZE = _HEADER.size + _CRC.size
_OP = struct.Struct("<BBHII32s")
OP_FIXED_SIZE = _OP.size
_EXTENT = struct.Struct("<QQ")
EXTENT_SIZE = _EXTENT.size


class OpKind(enum.IntEnum):
    """How an operation produces its part of the new image."""

    COPY = 1
    BSDIFF = 2
    REPLACE = 3
    ZERO = 4
    ZSTD_PATCH = 5


class Codec(enum.IntEnum):
    """Compression of a REPLACE or BSDIFF payload."""

    NONE = 0
    ZSTD = 1
    XZ = 2


@dataclass(frozen=True)
class Extent:
    """A byte range of the source image."""

    offset: int
    length: int

    @property
    def end(self) -> int:
        return self.offset + self.length


@dataclass(frozen=True)
class DeltaHeader:
    """What a delta turns into what: enough to decide whether it fits the active slot."""

    block_size: int
    source_size: int
    source_sha256: bytes
    target_size: int
    target_sha256: bytes
    version: int = FORMAT_VERSION

    @property
    def op_count(self) -> int:
        return -(-self.target_size // self.block_size)

    def op_target_length(self, index: int) -> int:
        """Length of the new-image block operation ``index`` produces."""
        return min(self.block_size, self.target_size - index * self.block_size)

    @property
    def max_op_source(self) -> int:
        return SOURCE_FACTOR * self.block_size


@dataclass(frozen=True)
class OpHeader:
    """One operation record without its payload."""

    kind: OpKind
    codec: Codec
    target_length: int
    payload_length: int
    sha256: bytes
    extents: tuple[Extent, ...] = ()

    @property
    def source_length(self) -> int:
        return sum(extent.length for extent in self.extents)

    @property
    def encoded_size(self) -> int:
        return OP_FIXED_SIZE + EXTENT_SIZE * len(self.extents)


def encode_header(header: DeltaHeader) -> bytes:
    body = _HEADER.pack(
        MAGIC,
        header.version,
        0,
        header.block_size,
        header.source_size,
        header.source_sha256,
        header.target_size,
        header.target_sha256,
        header.op_count,
    )
    return body + _CRC.pack(zlib.crc32(body))


def decode_header(data: bytes) -> DeltaHeader:
    """Parse and validate the fixed-size header (exactly HEADER_SIZE bytes)."""
    if len(data) != HEADER_SIZE:
        raise DeltaFormatError(f"delta header is {len(data)} bytes, expected {HEADER_SIZE}")
    body = data[: _HEADER.size]
    magic, version, flags, block_size, source_size, source_sha, target_size, target_sha, ops = (
        _HEADER.unpack(body)
    )
    if magic != MAGIC:
        raise DeltaFormatError("not a Redstone delta (bad magic)")
    if version != FORMAT_VERSION:
        raise DeltaFormatError(
            f"delta format version {version} is not supported (this build reads {FORMAT_VERSION})"
        )
    (crc,) = _CRC.unpack(data[_HEADER.size :])
    if crc != zlib.crc32(body):
        raise DeltaFormatError("delta header is corrupt (CRC mismatch)")
    if flags != 0:
        raise DeltaFormatError(f"delta header has unknown flags {flags:#x}")
    if not MIN_BLOCK_SIZE <= block_size <= MAX_BLOCK_SIZE:
        raise DeltaFormatError(
            f"delta block size {block_size} outside {MIN_BLOCK_SIZE}..{MAX_BLOCK_SIZE}"
        )
    for name, size in (("source", source_size), ("target", target_size)):
        if size > MAX_TARGET_SIZE:
            raise DeltaFormatError(f"delta {name} size {size} exceeds {MAX_TARGET_SIZE}")
    header = DeltaHeader(block_size, source_size, source_sha, target_size, target_sha, version)
    if ops != header.op_count:
        raise DeltaFormatError(
            f"delta header says {ops} operations, its sizes imply {header.op_count}"
        )
    return header


def encode_op(op: OpHeader) -> bytes:
    fixed = _OP.pack(
        op.kind, op.codec, len(op.extents), op.target_length, op.payload_length, op.sha256
    )
    return fixed + b"".join(_EXTENT.pack(e.offset, e.length) for e in op.extents)


def decode_op_fixed(data: bytes) -> tuple[int, int, int, int, int, bytes]:
    """Split the fixed part of an operation record: kind, codec, extents, lengths, hash."""
    kind, codec, count, target_length, payload_length, sha = _OP.unpack(data)
    return kind, codec, count, target_length, payload_length, sha


def decode_op(fixed: bytes, extents: bytes, header: DeltaHeader, index: int) -> OpHeader:
    """Parse and validate operation ``index``; ``extents`` holds its extent table."""
    kind_no, codec_no, count, target_length, payload_length, sha = decode_op_fixed(fixed)
    where = f"operation {index}"
    try:
        kind = OpKind(kind_no)
    except ValueError:
        raise DeltaFormatError(f"{where}: unknown kind {kind_no}") from None
    try:
        codec = Codec(codec_no)
    except ValueError:
        raise DeltaFormatError(f"{where}: unknown codec {codec_no}") from None
    if len(extents) != count * EXTENT_SIZE:
        raise DeltaFormatError(f"{where}: extent table has the wrong size")
    op = OpHeader(
        kind,
        codec,
        target_length,
        payload_length,
        sha,
        tuple(Extent(o, n) for o, n in _EXTENT.iter_unpack(extents)),
    )
    validate_op(op, header, index)
    return op


def validate_op(op: OpHeader, header: DeltaHeader, index: int) -> None:
    """Reject an operation whose fields do not fit the header's limits."""
    where = f"operation {index} ({op.kind.name})"
    expected = header.op_target_length(index)
    if op.target_length != expected:
        raise DeltaFormatError(f"{where}: produces {op.target_length} bytes, expected {expected}")
    if op.payload_length > op.target_length:
        raise DeltaFormatError(
            f"{where}: payload of {op.payload_length} bytes exceeds its output size"
        )
    _validate_extents(op, header, where)
    _validate_kind_rules(op, where)


def _validate_extents(op: OpHeader, header: DeltaHeader, where: str) -> None:
    if len(op.extents) > MAX_EXTENTS:
        raise DeltaFormatError(f"{where}: {len(op.extents)} extents, at most {MAX_EXTENTS}")
    for extent in op.extents:
        if extent.length == 0 or extent.end > header.source_size:
            raise DeltaFormatError(
                f"{where}: source extent {extent.offset}+{extent.length} outside the "
                f"{header.source_size}-byte source"
            )
    if op.source_length > header.max_op_source:
        raise DeltaFormatError(
            f"{where}: reads {op.source_length} source bytes, at most {header.max_op_source}"
        )


def _validate_kind_rules(op: OpHeader, where: str) -> None:
    has_extents = bool(op.extents)
    if op.kind is OpKind.COPY:
        ok = has_extents and op.source_length == op.target_length and op.payload_length == 0
    elif op.kind is OpKind.ZERO:
        ok = not has_extents and op.payload_length == 0
    elif op.kind is OpKind.REPLACE:
        ok = not has_extents and (
            op.codec is not Codec.NONE or op.payload_length == op.target_length
        )
    elif op.kind is OpKind.ZSTD_PATCH:
        ok = has_extents and op.payload_length > 0 and op.codec is Codec.ZSTD
    else:
        ok = has_extents and op.payload_length > 0
    if op.kind in (OpKind.COPY, OpKind.ZERO) and op.codec is not Codec.NONE:
        ok = False
    if not ok:
        raise DeltaFormatError(f"{where}: fields inconsistent with its kind")
