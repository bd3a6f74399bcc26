"""Transparent xz / zstd decompression of a chunk stream, chosen by magic bytes.

Both decoders are driven through bounded ``read(n)`` calls, so a small
compressed input that expands enormously (a decompression bomb) never
materialises more than ``out_size`` bytes at once; the consumer's length
check stops it. Nothing touches the disk.
"""

from __future__ import annotations

import lzma
from collections.abc import Iterable, Iterator
from typing import IO, Literal, Protocol, cast

import zstandard

from redstone_agent.transfer.errors import CorruptSource
from redstone_agent.transfer.stream import ChunkStream

XZ_MAGIC = b"\xfd7zXZ\x00"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

Compression = Literal["xz", "zstd", "none"]


class _Reader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


def detect(head: bytes) -> Compression:
    """Name the compression a stream starting with ``head`` uses (at least 6 bytes, or all)."""
    if head.startswith(XZ_MAGIC):
        return "xz"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return "none"


def _peek(chunks: Iterator[bytes], want: int) -> bytes:
    head = b""
    while len(head) < want:
        chunk = next(chunks, None)
        if chunk is None:
            break
        head += chunk
    return head


def _prepend(head: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if head:
        yield head
    yield from rest


def decompressing(chunks: Iterable[bytes], *, out_size: int = 1 << 20) -> Iterator[bytes]:
    """Yield the decompressed bytes of ``chunks`` (xz or zstd), or the bytes unchanged."""
    rest = iter(chunks)
    head = _peek(rest, len(XZ_MAGIC))
    kind = detect(head)
    stream = _prepend(head, rest)
    if kind == "none":
        yield from stream
        return
    reader = _decoder(kind, ChunkStream(stream))
    try:
        while block := _read(reader, kind, out_size):
            yield block
    finally:
        reader.close()


def _decoder(kind: Compression, raw: ChunkStream) -> _Reader:
    # Both libraries accept any object with read(); their stubs ask for IO[bytes].
    source = cast(IO[bytes], raw)
    if kind == "xz":
        return lzma.LZMAFile(source, mode="rb")
    return zstandard.ZstdDecompressor().stream_reader(
        source, read_size=1 << 17, read_across_frames=True, closefd=False
    )


def _read(reader: _Reader, kind: Compression, size: int) -> bytes:
    try:
        return reader.read(size)
    except (lzma.LZMAError, EOFError, zstandard.ZstdError) as error:
        raise CorruptSource(f"{kind} data is corrupt or truncated: {error}") from error
