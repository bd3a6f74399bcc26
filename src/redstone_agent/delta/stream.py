"""Bounded, strictly forward reads from any binary stream (file, HTTP body, decompressor)."""

from __future__ import annotations

from typing import Protocol

from redstone_agent.delta.errors import DeltaTruncatedError, SourceMismatchError

_CHUNK = 1 << 20


class Readable(Protocol):
    """The only thing apply needs from a delta stream (a file, HTTP body, raw or buffered IO)."""

    def read(self, size: int = -1, /) -> bytes | None: ...


class SourceImage(Readable, Protocol):
    """The active image: readable at any offset (a file, a block device, a window onto one)."""

    def seek(self, offset: int, whence: int = 0, /) -> int: ...


def _read_up_to(stream: Readable, size: int) -> bytes:
    """Up to ``size`` bytes, fewer only at end of stream; tolerates short reads."""
    parts: list[bytes] = []
    missing = size
    while missing > 0:
        chunk = stream.read(min(missing, _CHUNK))
        if not chunk:
            break
        parts.append(chunk)
        missing -= len(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def read_exact(stream: Readable, size: int, what: str) -> bytes:
    """Read exactly ``size`` bytes, in reads of at most 1 MiB, or fail naming ``what``."""
    data = _read_up_to(stream, size)
    if len(data) != size:
        raise DeltaTruncatedError(f"delta truncated: {what} ends {size - len(data)} bytes early")
    return data


def read_source(source: SourceImage, offset: int, length: int) -> bytes:
    """Read one extent of the source image."""
    source.seek(offset)
    data = _read_up_to(source, length)
    if len(data) != length:
        raise SourceMismatchError(
            f"source image ends before {offset + length} bytes: not the image the delta expects"
        )
    return data


def stream_size(source: SourceImage) -> int:
    """Size of a seekable stream (file or block device) without reading it."""
    return source.seek(0, 2)
