"""Bounded, strictly forward reads from any binary stream (file, HTTP body, decompressor)."""

from __future__ import annotations

from typing import BinaryIO, Protocol

from redstone_agent.delta.errors import DeltaTruncatedError, SourceMismatchError

_CHUNK = 1 << 20


class Readable(Protocol):
    """The only thing apply needs from a delta stream."""

    def read(self, size: int = -1, /) -> bytes: ...


def read_exact(stream: Readable, size: int, what: str) -> bytes:
    """Read exactly ``size`` bytes, in reads of at most 1 MiB, or fail naming ``what``."""
    parts: list[bytes] = []
    missing = size
    while missing > 0:
        chunk = stream.read(min(missing, _CHUNK))
        if not chunk:
            raise DeltaTruncatedError(f"delta truncated: {what} ends {missing} bytes early")
        parts.append(chunk)
        missing -= len(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def read_source(source: BinaryIO, offset: int, length: int) -> bytes:
    """Read one extent of the source image."""
    source.seek(offset)
    data = source.read(length)
    if len(data) != length:
        raise SourceMismatchError(
            f"source image ends before {offset + length} bytes: not the image the delta expects"
        )
    return data


def stream_size(source: BinaryIO) -> int:
    """Size of a seekable stream (file or block device) without reading it."""
    return source.seek(0, 2)
