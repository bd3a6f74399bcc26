"""Streaming image writer: bytes in, a verified slot out (or an honest failure).

Incoming data is gathered into large aligned blocks. Each full block goes at
once to two worker threads — one hashes it, one writes it — and returns to a
small pool when both are done. hashlib and os.pwrite release the GIL, so
hashing and writing run in parallel with each other and with the caller's
reading and decompressing: throughput approaches min(raw write, SHA-256)
while memory stays at ``depth`` blocks whatever the image size.

Nothing here decides whether a slot may be written (booted slot, mounted
device): the slot layer checks that before it builds a writer. Leaving the
context without :meth:`SlotWriter.finish` never claims success; the caller's
bootloader marks keep the slot unbootable.

Resume: with a ``checkpoint`` callback the writing thread makes what it has
written durable (fsync) every ``CHECKPOINT_BYTES`` (at most once per
``CHECKPOINT_SECONDS``) and then reports that offset, which the slot layer
journals. A later writer for the same image calls :meth:`SlotWriter.resume`
with it: the slot's first bytes are re-read and hashed (a local read, no
download) so the running SHA-256 covers the whole image again, and writing
continues there. Nothing about those bytes is trusted: the length and
SHA-256 check of :meth:`SlotWriter.finish` covers every byte, old and new.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import mmap
import os
import queue
import re
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from redstone_agent.slots.errors import SlotError
from redstone_agent.transfer.errors import TransferCancelled

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

log = logging.getLogger(__name__)

ALIGNMENT = 4096
"""Block sizes and write offsets are multiples of this (page and sector size)."""

Progress = Callable[[int, int | None], None]
"""``progress(bytes_written, expected_size)``, called from the writing thread's caller."""

Checkpoint = Callable[[int], None]
"""``checkpoint(durable_bytes)``, called from the writing thread after an fsync."""

CHECKPOINT_BYTES = 4 << 20
"""Make the written prefix durable and report it at least this many bytes apart."""

CHECKPOINT_SECONDS = 1.0
"""…and at most once per this many seconds, so a fast local write pays few fsyncs."""


@runtime_checkable
class ReadsInto(Protocol):
    """A source that can fill a caller's buffer (ByteSource, ChunkStream, raw files)."""

    def readinto(self, buffer: WriteableBuffer, /) -> int | None: ...


class SlotWriteError(SlotError):
    """The image could not be written to the slot (I/O error, device too small, bad argument)."""


class ImageMismatch(SlotWriteError):
    """The streamed image is not the expected one (length or SHA-256 differ)."""


class ReadbackMismatch(SlotWriteError):
    """The slot does not read back what was written (failing or lying storage)."""


class WriteCancelled(SlotWriteError, TransferCancelled):
    """The caller's cancel event stopped the write; the slot holds a partial image."""


@dataclass(frozen=True)
class WriteResult:
    """What a verified write produced."""

    size: int
    sha256: str
    seconds: float


class BlockSink:
    """Positional block writes plus the durability policy; shared with the benchmark.

    Aligned blocks go through a second descriptor opened with ``O_DIRECT``:
    the data leaves straight from the caller's buffer, with no copy into the
    page cache — almost no CPU, which hashing needs on a small board, and no
    eviction of everything else cached. Where ``O_DIRECT`` is refused (tmpfs,
    an unaligned buffer) and for the unaligned tail, writes are buffered and
    the kernel is told to start write-back of each block ``lag`` blocks
    later, so the final fsync has little left to flush.
    """

    def __init__(self, fd: int, path: Path, *, direct: bool = True, lag: int = 2) -> None:
        self.fd = fd
        self.path = path
        self.direct_fd = _reopen_direct(fd) if direct else -1
        self._lag = lag
        self._recent: list[tuple[int, int]] = []

    @property
    def direct(self) -> bool:
        """Whether aligned blocks still bypass the page cache."""
        return self.direct_fd >= 0

    def write(self, data: memoryview, offset: int) -> None:
        """Write all of ``data`` at ``offset``; raise SlotWriteError naming the byte on failure."""
        done = 0
        try:
            if self.direct and offset % ALIGNMENT == 0:
                done = self._write_direct(data, offset)
            if done < len(data):
                while done < len(data):
                    done += os.pwrite(self.fd, data[done:], offset + done)
                self._start_write_back(offset, len(data))
        except OSError as error:
            raise SlotWriteError(
                f"writing {self.path} at byte {offset + done} failed: {error.strerror}"
            ) from error

    def _write_direct(self, data: memoryview, offset: int) -> int:
        done = 0
        try:
            while done < len(data) and (len(data) - done) % ALIGNMENT == 0:
                done += os.pwrite(self.direct_fd, data[done:], offset + done)
        except OSError as error:
            if error.errno != errno.EINVAL:
                raise
            log.info("%s refuses O_DIRECT (%s); writing buffered", self.path, error.strerror)
            self.close()
        return done

    def _start_write_back(self, offset: int, length: int) -> None:
        self._recent.append((offset, length))
        if len(self._recent) > self._lag:
            start, size = self._recent.pop(0)
            _drop_cache(self.fd, start, size)

    def sync(self) -> None:
        """Make everything written durable."""
        try:
            os.fsync(self.fd)
        except OSError as error:
            raise SlotWriteError(f"flushing {self.path} failed: {error.strerror}") from error

    def close(self) -> None:
        """Close the direct descriptor (the caller owns ``fd``)."""
        if self.direct_fd >= 0:
            os.close(self.direct_fd)
            self.direct_fd = -1


def _reopen_direct(fd: int) -> int:
    """A second O_DIRECT descriptor for the very file ``fd`` is open on, or -1."""
    try:
        return os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_DIRECT | os.O_CLOEXEC)
    except OSError as error:
        log.info("no O_DIRECT here (%s); writing buffered", error.strerror)
        return -1


def _drop_cache(fd: int, offset: int, length: int) -> None:
    """Start write-back of a range and drop its clean pages; advice only, so errors are moot."""
    try:
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
    except OSError:
        log.debug("posix_fadvise not supported here", exc_info=True)


def open_target(target: Path, expected_size: int | None, capacity: int | None = None) -> int:
    """Open a block device or regular file for writing without truncating it.

    A missing target is created as a regular file; anything else (directory,
    character device, FIFO) is refused, as is a device — or a ``capacity``,
    the slot's configured size — smaller than the image.
    """
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as error:
        raise SlotWriteError(f"cannot open {target} for writing: {error.strerror}") from error
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISBLK(mode):
            capacity = os.lseek(fd, 0, os.SEEK_END)
            if expected_size is not None and expected_size > capacity:
                raise SlotWriteError(
                    f"{target} holds {capacity} bytes, the image needs {expected_size}"
                )
        elif not stat.S_ISREG(mode):
            raise SlotWriteError(f"{target} is neither a block device nor a regular file")
        if capacity is not None and expected_size is not None and expected_size > capacity:
            raise SlotWriteError(
                f"the image needs {expected_size} bytes, slot {target} holds {capacity}"
            )
    except BaseException:
        os.close(fd)
        raise
    return fd


class _Block:
    """One reusable page-aligned buffer (O_DIRECT needs that) and how many workers use it."""

    def __init__(self, size: int) -> None:
        self.view = memoryview(mmap.mmap(-1, size))
        self.length = 0
        self.offset = 0
        self.users = 0


class _Worker(threading.Thread):
    """Applies ``job`` to blocks in order; after a failure it only hands blocks back."""

    def __init__(
        self, name: str, job: Callable[[_Block], None], release: Callable[[_Block], None]
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.inbox: queue.SimpleQueue[_Block | None] = queue.SimpleQueue()
        self.error: BaseException | None = None
        self.skip = False
        self._job = job
        self._release = release

    def run(self) -> None:
        while (block := self.inbox.get()) is not None:
            try:
                if self.error is None and not self.skip:
                    self._job(block)
            except BaseException as error:
                self.error = error
            finally:
                self._release(block)


class SlotWriter:
    """Write an image of known SHA-256 (and usually length) into ``target``, verifying it."""

    def __init__(
        self,
        target: Path,
        *,
        expected_size: int | None,
        expected_sha256: str,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
        verify_readback: bool = False,
        chunk_size: int = 4 << 20,
        depth: int = 4,
        capacity: int | None = None,
        checkpoint: Checkpoint | None = None,
        checkpoint_bytes: int | None = None,
        checkpoint_seconds: float | None = None,
    ) -> None:
        if chunk_size <= 0 or chunk_size % ALIGNMENT:
            raise ValueError(f"chunk_size must be a positive multiple of {ALIGNMENT}")
        if depth < 2:
            raise ValueError("depth must be at least 2 so hashing and writing overlap")
        if not re.fullmatch(r"[0-9a-fA-F]{64}", expected_sha256):
            raise SlotWriteError(f"expected SHA-256 must be 64 hex digits, got {expected_sha256!r}")
        if expected_size is not None and expected_size < 0:
            raise SlotWriteError(f"expected size must not be negative, got {expected_size}")
        self.target = Path(target)
        self.expected_size = expected_size
        self.expected_sha256 = expected_sha256.lower()
        self.capacity = capacity
        """Bytes the slot may hold (its configured size): never written past, size known or not."""
        self.received = 0
        """Bytes accepted from the caller so far (a resumed prefix included)."""
        self.checkpoint = checkpoint
        """Told each durable offset (set it before the first write; None: no checkpoints)."""
        self.durable = 0
        """The last offset made durable and reported to ``checkpoint``."""
        self._checkpoint_bytes = CHECKPOINT_BYTES if checkpoint_bytes is None else checkpoint_bytes
        self._checkpoint_seconds = (
            CHECKPOINT_SECONDS if checkpoint_seconds is None else checkpoint_seconds
        )
        self._checkpointed_at = time.monotonic()
        self._progress = progress
        self._cancel = cancel
        self._verify_readback = verify_readback
        self._chunk_size = chunk_size
        self._started = time.monotonic()
        self._hash = hashlib.sha256()
        self._written = 0
        self._reported = -1
        self._state = "open"
        self._lock = threading.Lock()
        self._free: queue.SimpleQueue[_Block] = queue.SimpleQueue()
        for _ in range(depth):
            self._free.put(_Block(chunk_size))
        self._current: _Block | None = None
        self._fd = open_target(self.target, expected_size, capacity)
        self._sink = BlockSink(self._fd, self.target)
        self._hasher = _Worker("slot-hash", self._hash_block, self._release)
        self._writer = _Worker("slot-write", self._write_block, self._release)
        self._hasher.start()
        self._writer.start()

    # -- worker jobs (run in the worker threads) --------------------------------------------

    def _hash_block(self, block: _Block) -> None:
        self._hash.update(block.view[: block.length])

    def _write_block(self, block: _Block) -> None:
        self._sink.write(block.view[: block.length], block.offset)
        self._written += block.length
        self._maybe_checkpoint()

    def _maybe_checkpoint(self) -> None:
        """fsync, then report the durable offset: only whole aligned blocks, never the end.

        The end needs none (``finish`` syncs and the slot layer journals the
        result); an unaligned offset could not be resumed with ``O_DIRECT``.
        """
        written = self._written
        if (
            self.checkpoint is None
            or written % ALIGNMENT
            or written - self.durable < self._checkpoint_bytes
            or (self.expected_size is not None and written >= self.expected_size)
            or time.monotonic() - self._checkpointed_at < self._checkpoint_seconds
        ):
            return
        self._sink.sync()
        self.durable = written
        self._checkpointed_at = time.monotonic()
        self.checkpoint(written)

    def _release(self, block: _Block) -> None:
        with self._lock:
            block.users -= 1
            if block.users:
                return
        block.length = 0
        self._free.put(block)

    # -- caller side ------------------------------------------------------------------------

    def resume(self, offset: int) -> None:
        """Take the slot's first ``offset`` bytes as the image's start and continue after them.

        They are read back and hashed here (no download); only the final
        length and SHA-256 check says whether they were right. Call it before
        any write; ``offset`` must be a multiple of ALIGNMENT (what
        checkpoints report) and below the image's size.
        """
        if self.received or self._current is not None:
            raise RuntimeError(f"SlotWriter for {self.target}: resume() before any write")
        limit = self._limit()
        if offset <= 0 or offset % ALIGNMENT or (limit is not None and offset >= limit):
            raise SlotWriteError(
                f"cannot resume {self.target} at byte {offset}: not a checkpoint of this image"
            )
        try:
            reader = os.open(self.target, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as error:
            raise SlotWriteError(f"cannot reopen {self.target}: {error.strerror}") from error
        block = self._free.get()
        try:
            done = 0
            while done < offset:
                self._check_usable()
                want = min(self._chunk_size, offset - done)
                count = os.preadv(reader, [block.view[:want]], done)
                if count == 0:
                    raise SlotWriteError(f"{self.target} ended at byte {done} of {offset}")
                self._hash.update(block.view[:count])
                done += count
        except OSError as error:
            raise SlotWriteError(
                f"reading {self.target} at byte {done} failed: {error.strerror}"
            ) from error
        finally:
            self._free.put(block)
            os.close(reader)
        self.received = self._written = self.durable = offset
        self._report()
        log.info("resuming %s at byte %d (prefix re-hashed)", self.target, offset)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data`` to the image; refuses at once anything beyond ``expected_size``."""
        self._check_usable()
        view = memoryview(data).cast("B")
        limit = self._limit()
        if limit is not None and self.received + len(view) > limit:
            raise self._too_long()
        while view:
            block = self._block()
            take = min(self._chunk_size - block.length, len(view))
            block.view[block.length : block.length + take] = view[:take]
            self._filled(block, take)
            view = view[take:]
        self._report()

    def write_from(self, source: ReadsInto) -> int:
        """Read ``source`` to its end straight into the aligned blocks (no extra copy).

        Never reads more than ``expected_size`` (nor ``capacity``) into the
        slot: one probe byte beyond it decides between "exact" and "too long".
        """
        start = self.received
        limit = self._limit()
        while True:
            self._check_usable()
            room = self._chunk_size
            if limit is not None:
                room = limit - self.received
                if room == 0:
                    if source.readinto(bytearray(1)):
                        raise self._too_long()
                    break
            block = self._block()
            room = min(room, self._chunk_size - block.length)
            count = source.readinto(block.view[block.length : block.length + room]) or 0
            if count == 0:
                break
            self._filled(block, count)
            self._report()
        return self.received - start

    def _block(self) -> _Block:
        """The partly filled block, or a free one (waiting for the workers if need be)."""
        if self._current is None:
            self._current = self._free.get()
            self._current.offset = self.received
        return self._current

    def _filled(self, block: _Block, count: int) -> None:
        block.length += count
        self.received += count
        if block.length == self._chunk_size:
            self._dispatch()

    def _limit(self) -> int | None:
        """The most bytes this image may have: its expected size, bounded by the slot's."""
        known = [n for n in (self.expected_size, self.capacity) if n is not None]
        return min(known) if known else None

    def _too_long(self) -> SlotWriteError:
        if self.capacity is not None and self._limit() == self.capacity != self.expected_size:
            return SlotWriteError(
                f"image for {self.target} is larger than the slot's {self.capacity} bytes"
            )
        return ImageMismatch(
            f"image for {self.target} is longer than the expected {self.expected_size} bytes"
        )

    def _dispatch(self) -> None:
        block, self._current = self._current, None
        if block is None or not block.length:
            if block is not None:
                self._free.put(block)
            return
        block.users = 2
        self._hasher.inbox.put(block)
        self._writer.inbox.put(block)

    def _check_usable(self) -> None:
        if self._state != "open":
            raise RuntimeError(f"SlotWriter for {self.target} is already {self._state}")
        if self._cancel is not None and self._cancel.is_set():
            raise WriteCancelled(
                f"writing {self.target} cancelled after {self.received} bytes; "
                f"the slot holds a partial image"
            )
        for worker in (self._writer, self._hasher):
            if worker.error is not None:
                raise worker.error

    def _report(self) -> None:
        written = self._written
        if self._progress is not None and written != self._reported:
            self._reported = written
            self._progress(written, self.expected_size)

    def _stop_workers(self, *, abandon: bool) -> None:
        for worker in (self._hasher, self._writer):
            worker.skip = abandon
            worker.inbox.put(None)
        for worker in (self._hasher, self._writer):
            worker.join()

    def finish(self) -> WriteResult:
        """Check length and SHA-256, make the data durable, optionally read it back."""
        self._check_usable()
        self._dispatch()
        self._stop_workers(abandon=False)
        self._state = "failed"
        for worker in (self._writer, self._hasher):
            if worker.error is not None:
                raise worker.error
        if self.expected_size is not None and self.received != self.expected_size:
            raise ImageMismatch(
                f"image for {self.target} ended after {self.received} bytes, "
                f"expected {self.expected_size}"
            )
        digest = self._hash.hexdigest()
        if digest != self.expected_sha256:
            raise ImageMismatch(
                f"image for {self.target} has SHA-256 {digest}, expected {self.expected_sha256}"
            )
        self._sink.sync()
        if self._verify_readback:
            read_back(self.target, self._fd, self.received, digest, self._chunk_size)
        self._state = "finished"
        self._report()
        seconds = time.monotonic() - self._started
        log.info("wrote %d bytes to %s in %.2fs", self.received, self.target, seconds)
        return WriteResult(size=self.received, sha256=digest, seconds=seconds)

    def close(self) -> None:
        """Stop the workers and release the target; does not claim anything was verified."""
        if self._state == "open":
            self._state = "abandoned"
            self._stop_workers(abandon=True)
        self._sink.close()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> SlotWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def read_back(target: Path, fd: int, size: int, expected: str, chunk_size: int) -> None:
    """Re-read ``size`` bytes of ``target`` from storage and compare their SHA-256.

    The written range is evicted from the page cache first, so the bytes come
    from the device rather than from memory that merely remembers the write.
    """
    _drop_cache(fd, 0, size)
    digest = hashlib.sha256()
    buffer = bytearray(chunk_size)
    view = memoryview(buffer)
    remaining = size
    try:
        reader = os.open(target, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as error:
        raise SlotWriteError(f"cannot reopen {target} to verify: {error.strerror}") from error
    try:
        while remaining:
            count = os.readv(reader, [view[: min(chunk_size, remaining)]])
            if count == 0:
                raise ReadbackMismatch(f"{target} ended {remaining} bytes short on read-back")
            digest.update(view[:count])
            remaining -= count
    except OSError as error:
        raise ReadbackMismatch(f"reading back {target} failed: {error.strerror}") from error
    finally:
        os.close(reader)
    if digest.hexdigest() != expected:
        raise ReadbackMismatch(
            f"{target} reads back SHA-256 {digest.hexdigest()}, wrote {expected}"
        )


def write_image(
    chunks: Iterable[bytes] | ReadsInto,
    target: Path,
    *,
    expected_size: int | None,
    expected_sha256: str,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    verify_readback: bool = False,
    chunk_size: int = 4 << 20,
) -> WriteResult:
    """Stream ``chunks`` into ``target`` and verify them; the one-call form of SlotWriter.

    Sources that offer ``readinto`` (every ByteSource) are read straight into
    the writer's blocks.
    """
    with SlotWriter(
        target,
        expected_size=expected_size,
        expected_sha256=expected_sha256,
        progress=progress,
        cancel=cancel,
        verify_readback=verify_readback,
        chunk_size=chunk_size,
    ) as writer:
        if isinstance(chunks, ReadsInto):
            writer.write_from(chunks)
        else:
            for chunk in chunks:
                writer.write(chunk)
        return writer.finish()
