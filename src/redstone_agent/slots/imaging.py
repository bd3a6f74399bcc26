"""From a source location to verified bytes in a slot: the data path of an install.

The source is a full image (plain, xz or zstd) or a Redstone block delta
(docs/delta.md), told apart by its first bytes. A delta is applied against
the running slot, read through a window of exactly the delta's source size.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redstone_agent.delta import apply_delta, read_header
from redstone_agent.delta.format import MAGIC as DELTA_MAGIC
from redstone_agent.retry import RetryPolicy
from redstone_agent.slots.writer import SlotWriter, WriteResult
from redstone_agent.transfer import HeadThen, decompressing, open_source, peek_into


@dataclass(frozen=True)
class ActiveImage:
    """The running slot as a delta source: its device and, when known, its image hash."""

    device: Path
    sha256: str | None = None
    size: int | None = None

    def known_digest(self, size: int) -> bytes | None:
        """The recorded hash if it covers exactly ``size`` bytes, else None (hash it)."""
        if self.sha256 is None or self.size != size:
            return None
        return bytes.fromhex(self.sha256)


class SlotWindow(io.RawIOBase):
    """Read-only, seekable view of the first ``length`` bytes of a slot device.

    A slot is larger than the image in it; the delta applier sizes and hashes
    its source, so it must see the image's extent, not the partition's.
    """

    def __init__(self, handle: io.BufferedReader, length: int) -> None:
        super().__init__()
        self._handle = handle
        self._length = length
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._length}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        count = max(0, min(len(view), self._length - self._position))
        if count == 0:
            return 0
        self._handle.seek(self._position)
        got = self._handle.readinto(view[:count])
        self._position += got
        return got


def write_slot(
    source: str,
    device: Path,
    *,
    sha256: str,
    size: int | None,
    active: ActiveImage,
    progress: Callable[[int, int | None], None] | None = None,
    cancel: threading.Event | None = None,
    verify_readback: bool = False,
    retry: RetryPolicy | None = None,
) -> WriteResult:
    """Stream ``source`` into ``device`` and verify length and hash.

    Nothing here touches the bootloader: the caller switches only after this
    returns, so an exception means the slot must be treated as garbage.
    """
    with (
        open_source(source, cancel=cancel, retry=retry or RetryPolicy()) as raw,
        SlotWriter(
            device,
            expected_size=size,
            expected_sha256=sha256,
            progress=progress,
            cancel=cancel,
            verify_readback=verify_readback,
        ) as sink,
    ):
        head = peek_into(raw, len(DELTA_MAGIC))
        stream = HeadThen(head, raw)
        if head == DELTA_MAGIC:
            _apply(stream, active, sink)
        else:
            sink.write_from(decompressing(stream))
        return sink.finish()


def _apply(stream: HeadThen, active: ActiveImage, sink: SlotWriter) -> None:
    header = read_header(stream)
    with active.device.open("rb") as handle:
        window = SlotWindow(handle, header.source_size)
        apply_delta(
            stream,
            window,
            sink,
            header=header,
            source_sha256=active.known_digest(header.source_size),
        )
