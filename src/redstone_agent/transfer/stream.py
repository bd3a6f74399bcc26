"""A forward-only file-like view of an iterable of byte chunks.

The delta applier and the decompressors want ``read(n)``; sources and
pipelines produce chunks. This adapter bridges the two without buffering more
than one chunk.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer


class ChunkStream(io.RawIOBase):
    """Readable, non-seekable stream over ``chunks``.

    ``read(n)`` returns exactly ``n`` bytes until the end, then fewer, then b"":
    the delta applier can treat a short read as end of data.
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        super().__init__()
        self._chunks: Iterator[bytes] = iter(chunks)
        self._pending = memoryview(b"")
        self._position = 0

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        """Bytes handed out so far (the stream cannot seek, but it can count)."""
        return self._position

    def readinto(self, buffer: WriteableBuffer) -> int:
        """Fill ``buffer`` completely unless the chunks run out (no short reads mid-stream)."""
        target = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(target):
            if not self._pending:
                chunk = next(self._chunks, None)
                if chunk is None:
                    break
                self._pending = memoryview(chunk)
                continue
            count = min(len(target) - filled, len(self._pending))
            target[filled : filled + count] = self._pending[:count]
            self._pending = self._pending[count:]
            filled += count
        self._position += filled
        return filled
