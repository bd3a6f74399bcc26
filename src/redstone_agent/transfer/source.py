"""The byte-source interface and the local-file source.

A source yields the raw bytes of an image in order, exactly once, from byte
``start`` (0 unless it was opened at an offset to resume an earlier
transfer). The base class enforces what every source owes its caller
whatever the transport: the size cap (an endless or oversized source stops
with SourceTooLarge), the cancel event (checked between chunks) and the
running byte count.
"""

from __future__ import annotations

import fcntl
import os
import select
import stat
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from redstone_agent.transfer.errors import (
    ResumeRefused,
    SourceTooLarge,
    TransferCancelled,
    TransferError,
)
from redstone_agent.transfer.stream import ChunkStream

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer


class ByteSource(ABC):
    """Context manager and one-shot iterable of the raw bytes of a source."""

    def __init__(
        self,
        location: str,
        *,
        cancel: threading.Event | None,
        max_bytes: int | None,
        chunk_size: int,
    ) -> None:
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        self.location = location
        self.size: int | None = None
        """Total length when the source announces it (file size, Content-Length)."""
        self.resumed = 0
        """How many times the transfer picked up again after a broken connection."""
        self.received = 0
        """Bytes handed to the caller so far (from ``start`` on)."""
        self.start = 0
        """The byte of the file the first delivered byte is (the offset it was opened at)."""
        self.validator: str | None = None
        """What identifies this version of the file for a later resume (HTTP: strong
        ETag or Last-Modified), or None when the source has none."""
        self._cancel = cancel
        self._max_bytes = max_bytes
        self._chunk_size = chunk_size
        self._consumed = False
        self._stream: ChunkStream | None = None
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        self._claim()
        return self._guarded()

    def _claim(self) -> None:
        """Bytes come out once, through one access path (iteration or readinto)."""
        if self._consumed:
            raise RuntimeError(f"{self.location} is a one-shot source and was already read")
        self._consumed = True

    def _guarded(self) -> Iterator[bytes]:
        self.check_cancel()
        for chunk in self._chunks():
            self.check_cancel()
            self._count(len(chunk))
            yield chunk

    def _count(self, received: int) -> None:
        self.received += received
        if self._max_bytes is not None and self.start + self.received > self._max_bytes:
            raise SourceTooLarge(
                f"{self.location} sent more than the allowed {self._max_bytes} bytes"
            )

    def as_stream(self) -> ChunkStream:
        """A forward-only file-like ``read(n)`` view (for the delta applier)."""
        return ChunkStream(self)

    def readinto(self, buffer: WriteableBuffer) -> int:
        """Fill ``buffer`` with the next bytes (fewer only at the end, 0 after it).

        The slot writer reads this way straight into its aligned blocks;
        sources that can (local files) do it without an intermediate copy.
        """
        if self._stream is None:
            self._stream = self.as_stream()
        return self._stream.readinto(buffer)

    def check_cancel(self) -> None:
        """Raise TransferCancelled if the caller asked to stop."""
        if self._cancel is not None and self._cancel.is_set():
            raise TransferCancelled(f"transfer of {self.location} cancelled")

    def _check_announced_size(self) -> None:
        if self._max_bytes is not None and self.size is not None and self.size > self._max_bytes:
            raise SourceTooLarge(
                f"{self.location} is {self.size} bytes, more than the allowed {self._max_bytes}"
            )

    @abstractmethod
    def _chunks(self) -> Iterator[bytes]:
        """Yield the raw bytes from ``start``, each chunk at most ``chunk_size`` long."""

    def close(self) -> None:
        """Release files and connections; safe to call twice."""
        self.closed = True

    def __enter__(self) -> ByteSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


DEFAULT_OPEN_TIMEOUT = 30.0
"""Seconds a named pipe (FIFO) may wait for its writer's first byte."""


def _device_or_file_size(fd: int) -> int | None:
    """File size or device capacity; None for pipes and character devices (never seeks them)."""
    status = os.fstat(fd)
    if stat.S_ISREG(status.st_mode):
        return status.st_size
    if stat.S_ISBLK(status.st_mode):
        size = os.lseek(fd, 0, os.SEEK_END)
        os.lseek(fd, 0, os.SEEK_SET)
        return size
    return None


class FileSource(ByteSource):
    """A local regular file, block device or pipe.

    A pipe is read strictly forward and never seeked. Opening a named pipe
    blocks until a writer opens it, for ever if none does, so a FIFO is
    opened non-blocking and then given ``open_timeout`` seconds for its
    writer to send the first byte (or to close: an empty image) before
    ``TransferError`` says so; after that it reads like any blocking pipe.

    ``offset`` starts a regular file or block device there (a resumed
    install). Anything that cannot seek — a pipe, a FIFO, a character device
    — and a file shorter than ``offset`` refuse it with ``ResumeRefused``
    before they are opened or read, so the caller can open them from 0.
    """

    def __init__(
        self,
        path: Path,
        *,
        cancel: threading.Event | None = None,
        max_bytes: int | None = None,
        chunk_size: int = 1 << 20,
        open_timeout: float = DEFAULT_OPEN_TIMEOUT,
        offset: int = 0,
    ) -> None:
        super().__init__(str(path), cancel=cancel, max_bytes=max_bytes, chunk_size=chunk_size)
        self._fd = -1
        self._reading_into = False
        if offset < 0:
            raise ValueError("offset must not be negative")
        try:
            mode = path.stat().st_mode
            fifo = stat.S_ISFIFO(mode)
            if offset and not (stat.S_ISREG(mode) or stat.S_ISBLK(mode)):
                # Never opened: a FIFO's writer is not disturbed by the refusal.
                raise ResumeRefused(
                    f"source {path} cannot seek (a pipe or character device): "
                    f"it cannot continue at byte {offset}"
                )
            flags = os.O_RDONLY | os.O_CLOEXEC | (os.O_NONBLOCK if fifo else 0)
            self._fd = os.open(path, flags)
        except OSError as error:
            raise TransferError(f"cannot open source {path}: {error.strerror}") from error
        try:
            if fifo:
                self._await_writer(open_timeout)
            self.size = _device_or_file_size(self._fd)
            self._check_announced_size()
            if offset:
                self._seek(offset)
        except BaseException:
            self.close()
            raise

    def _seek(self, offset: int) -> None:
        if self.size is None or offset > self.size:
            raise ResumeRefused(
                f"source {self.location} is {self.size} bytes: it cannot continue at byte {offset}"
            )
        os.lseek(self._fd, offset, os.SEEK_SET)
        self.start = offset

    def _await_writer(self, timeout: float) -> None:
        """Wait for a FIFO's writer to send data or hang up, then make reads blocking.

        Linux reports neither readable nor hung-up on a FIFO that never had a
        writer, so poll waits for the writer; it wakes every 0.1 s to honour
        the cancel event.
        """
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        deadline = time.monotonic() + timeout
        while not poller.poll(100):
            self.check_cancel()
            if time.monotonic() >= deadline:
                raise TransferError(
                    f"source {self.location} is a named pipe and no writer sent anything "
                    f"within {timeout:g} s"
                )
        flags = fcntl.fcntl(self._fd, fcntl.F_GETFL)
        fcntl.fcntl(self._fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)

    def _chunks(self) -> Iterator[bytes]:
        while True:
            try:
                chunk = os.read(self._fd, self._chunk_size)
            except OSError as error:
                raise TransferError(
                    f"reading {self.location} at byte {self.received} failed: {error.strerror}"
                ) from error
            if not chunk:
                return
            yield chunk

    def readinto(self, buffer: WriteableBuffer) -> int:
        if not self._reading_into:
            self._claim()
            self._reading_into = True
        view = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(view):
            self.check_cancel()
            try:
                count = os.readv(self._fd, [view[filled:]])
            except OSError as error:
                raise TransferError(
                    f"reading {self.location} at byte {self.received} failed: {error.strerror}"
                ) from error
            if count == 0:
                break
            filled += count
            self._count(count)
        return filled

    def close(self) -> None:
        super().close()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
