"""Transparent xz / zstd decompression of a byte source, chosen by magic bytes.

Both decoders are driven through bounded ``read``/``readinto`` calls, so a
small compressed input that expands enormously (a decompression bomb) never
materialises more than one buffer at once; the consumer's length check stops
it. Nothing touches the disk.

The result can be iterated (chunks) or read with ``readinto`` — the slot
writer's copy-free path: plain data then goes from the source straight into
the writer's blocks, and zstd decodes straight into them.
"""

from __future__ import annotations

import lzma
from collections.abc import Callable, Iterable, Iterator
from typing import IO, TYPE_CHECKING, Literal, Protocol, TypeVar, cast, runtime_checkable

import zstandard

from redstone_agent.transfer.errors import CorruptSource
from redstone_agent.transfer.stream import ChunkStream

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

XZ_MAGIC = b"\xfd7zXZ\x00"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
MAGIC_BYTES = len(XZ_MAGIC)

Compression = Literal["xz", "zstd", "none"]
_T = TypeVar("_T")


@runtime_checkable
class _FillsBuffers(Protocol):
    def readinto(self, buffer: WriteableBuffer, /) -> int | None: ...


class _Reader(_FillsBuffers, Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def detect(head: bytes) -> Compression:
    """Name the compression a stream starting with ``head`` uses (at least 6 bytes, or all)."""
    if head.startswith(XZ_MAGIC):
        return "xz"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return "none"


class HeadThen:
    """``readinto`` that serves already-peeked bytes, then the source's own readinto."""

    def __init__(self, head: bytes, source: _FillsBuffers) -> None:
        self._head = memoryview(head)
        self._source = source

    def readinto(self, buffer: WriteableBuffer) -> int:
        if self._head:
            target = memoryview(buffer).cast("B")
            count = min(len(target), len(self._head))
            target[:count] = self._head[:count]
            self._head = self._head[count:]
            return count
        return self._source.readinto(buffer) or 0

    def read(self, size: int = -1) -> bytes:
        buffer = bytearray(size if size >= 0 else 1 << 20)
        return bytes(buffer[: self.readinto(buffer)])


def _peek_chunks(chunks: Iterator[bytes]) -> bytes:
    head = b""
    while len(head) < MAGIC_BYTES:
        chunk = next(chunks, None)
        if chunk is None:
            break
        head += chunk
    return head


def peek_into(source: _FillsBuffers, size: int = MAGIC_BYTES) -> bytes:
    """Read the first ``size`` bytes (fewer only at the end); serve them again with HeadThen."""
    head = bytearray(size)
    view = memoryview(head)
    filled = 0
    while filled < size:
        count = source.readinto(view[filled:]) or 0
        if count == 0:
            break
        filled += count
    return bytes(head[:filled])


def _prepend(head: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if head:
        yield head
    yield from rest


def _decoder(kind: Compression, raw: _Reader) -> _Reader:
    # Both libraries accept any object with read(); their stubs ask for IO[bytes].
    source = cast(IO[bytes], raw)
    if kind == "xz":
        return lzma.LZMAFile(source, mode="rb")
    return zstandard.ZstdDecompressor().stream_reader(
        source, read_size=1 << 17, read_across_frames=True, closefd=False
    )


class Decompressed:
    """The decompressed bytes of a source: an iterator of chunks, or a ``readinto`` reader.

    The compression is detected on first use; use one access path only.
    """

    def __init__(self, source: Iterable[bytes] | _FillsBuffers, out_size: int) -> None:
        self._source = source
        self._out_size = out_size
        self._reader: _Reader | None = None
        self._chunks: Iterator[bytes] | None = None
        self.kind: Compression | None = None
        """What was detected ("xz", "zstd", "none"); None until the first read."""

    def _open_for_readinto(self) -> _Reader:
        if self._reader is None:
            if isinstance(self._source, _FillsBuffers):
                head = peek_into(self._source)
                raw: _Reader = HeadThen(head, self._source)
            else:
                rest = iter(self._source)
                head = _peek_chunks(rest)
                raw = ChunkStream(_prepend(head, rest))
            self.kind = detect(head)
            self._reader = raw if self.kind == "none" else _decoder(self.kind, raw)
        return self._reader

    def _generate(self) -> Iterator[bytes]:
        if self._reader is None and not isinstance(self._source, Iterable):
            self._open_for_readinto()  # a reader, not chunks: decode through read()
        if self._reader is None:
            rest = iter(cast(Iterable[bytes], self._source))
            head = _peek_chunks(rest)
            self.kind = detect(head)
            if self.kind == "none":
                yield from _prepend(head, rest)
                return
            self._reader = _decoder(self.kind, ChunkStream(_prepend(head, rest)))
        while block := self._decode(lambda reader: reader.read(self._out_size)):
            yield block

    def _decode(self, step: Callable[[_Reader], _T]) -> _T:
        assert self._reader is not None
        try:
            return step(self._reader)
        except (lzma.LZMAError, EOFError, zstandard.ZstdError) as error:
            raise CorruptSource(f"{self.kind} data is corrupt or truncated: {error}") from error

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._chunks is None:
            self._chunks = self._generate()
        return next(self._chunks)

    def readinto(self, buffer: WriteableBuffer) -> int:
        """Fill up to ``len(buffer)`` bytes; 0 only at the end."""
        self._open_for_readinto()
        return self._decode(lambda reader: reader.readinto(buffer) or 0)


def decompressing(
    chunks: Iterable[bytes] | _FillsBuffers, *, out_size: int = 1 << 20
) -> Decompressed:
    """The decompressed bytes of ``chunks`` (xz or zstd), or the bytes unchanged."""
    return Decompressed(chunks, out_size)
