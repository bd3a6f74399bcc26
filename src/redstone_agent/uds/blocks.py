"""Pure helpers of the programming sequence: payload encoding, blocks, counters, records.

No I/O here, so the byte layouts can be tested exactly.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass

COMPRESSION_METHODS = {"none": 0x0, "zlib": 0x1}
"""dataFormatIdentifier high nibble per compression method (ours; OEM-specific in ISO 14229)."""


@dataclass(frozen=True)
class Payload:
    """What TransferData carries: possibly compressed bytes and the identifier naming it."""

    data: bytes
    data_format: int
    """dataFormatIdentifier: compression method << 4 | encryption method."""


def encode_payload(image: bytes, compression: str) -> Payload:
    """Compress ``image`` for the wire when asked to."""
    method = COMPRESSION_METHODS[compression]
    if method == 0:
        return Payload(image, 0x00)
    return Payload(zlib.compress(image, 6), method << 4)


def block_counter(index: int) -> int:
    """blockSequenceCounter of the ``index``-th block (0-based): 1, 2, … 0xFF, 0x00, 0x01 …"""
    return (index + 1) & 0xFF


def data_per_block(max_block_length: int) -> int:
    """Payload bytes per TransferData: the ECU's maxNumberOfBlockLength includes SID and counter."""
    if max_block_length <= 2:
        raise ValueError(f"ECU announced an unusable block length {max_block_length}")
    return max_block_length - 2


def iter_blocks(data: bytes, block_data: int, start: int = 0) -> Iterator[tuple[int, bytes]]:
    """``(index, chunk)`` pairs from block ``start`` on, ``block_data`` bytes each."""
    view = memoryview(data)
    count = (len(data) + block_data - 1) // block_data
    for index in range(start, count):
        yield index, bytes(view[index * block_data : (index + 1) * block_data])


def address_and_length(address: int, size: int, address_bytes: int, size_bytes: int) -> bytes:
    """addressAndLengthFormatIdentifier followed by memoryAddress and memorySize, big-endian."""
    return (
        bytes([(size_bytes << 4) | address_bytes])
        + address.to_bytes(address_bytes, "big")
        + size.to_bytes(size_bytes, "big")
    )


def crc32(data: bytes) -> bytes:
    """The checksum record the check-memory routine compares: CRC-32 (zlib), big-endian."""
    return zlib.crc32(data).to_bytes(4, "big")
