"""Walk a delta stream strictly forward: header, then each operation with its payload."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from redstone_agent.delta.errors import DeltaFormatError
from redstone_agent.delta.format import (
    EXTENT_SIZE,
    HEADER_SIZE,
    MAX_EXTENTS,
    OP_FIXED_SIZE,
    DeltaHeader,
    OpHeader,
    decode_header,
    decode_op,
    decode_op_fixed,
)
from redstone_agent.delta.stream import Readable, read_exact


@dataclass(frozen=True)
class Operation:
    """One validated operation record and its (still encoded) payload."""

    index: int
    header: OpHeader
    payload: bytes

    @property
    def where(self) -> str:
        return f"operation {self.index} ({self.header.kind.name})"

    @property
    def encoded_size(self) -> int:
        return self.header.encoded_size + len(self.payload)


def read_header(stream: Readable) -> DeltaHeader:
    """Read and validate a delta's header (its first HEADER_SIZE bytes) and nothing more."""
    return decode_header(read_exact(stream, HEADER_SIZE, "header"))


def iter_operations(stream: Readable, header: DeltaHeader) -> Iterator[Operation]:
    """Yield every operation after the header, then insist the stream ends there."""
    for index in range(header.op_count):
        op = _read_op_header(stream, header, index)
        payload = read_exact(stream, op.payload_length, f"operation {index} payload")
        yield Operation(index, op, payload)
    if stream.read(1):
        raise DeltaFormatError("delta has trailing data after its last operation")


def _read_op_header(stream: Readable, header: DeltaHeader, index: int) -> OpHeader:
    fixed = read_exact(stream, OP_FIXED_SIZE, f"operation {index}")
    count = decode_op_fixed(fixed)[2]
    if count > MAX_EXTENTS:
        raise DeltaFormatError(f"operation {index}: {count} extents, at most {MAX_EXTENTS}")
    extents = read_exact(stream, count * EXTENT_SIZE, f"operation {index} extents")
    return decode_op(fixed, extents, header, index)
