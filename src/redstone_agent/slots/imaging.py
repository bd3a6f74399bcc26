"""From a source location to verified bytes in a slot: the data path of an install.

The source is a full image (plain, xz or zstd) or a Redstone block delta
(docs/delta.md), told apart by its first bytes. A delta is applied against
the running slot, read through a window of exactly the delta's source size.

When the caller also knows the source file's own length and hash (a delta
whose Uptane target is the delta file, not the image it builds), the raw
bytes pass through :class:`CheckedSource`: never more than that length is
read, and the hash is compared before :func:`write_slot` returns — so before
the slot layer primes the slot.

Resume (docs/transfer.md "Resuming an install"): only a plain full image
resumes — its slot offsets are its source offsets, and the running SHA-256
is rebuilt by re-reading the slot. A compressed image or a delta cannot: the
decoder's or applier's state at that point was never saved, so they start
from byte 0. :func:`write_slot` reports each durable offset of a plain image
as a :class:`ResumePoint`; given one back, it continues there, and starts
from 0 whenever the source cannot continue or the result does not verify.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redstone_agent.delta import apply_delta, read_header
from redstone_agent.delta.format import MAGIC as DELTA_MAGIC
from redstone_agent.retry import RetryPolicy
from redstone_agent.slots.errors import SourceMismatch
from redstone_agent.slots.writer import ALIGNMENT, ImageMismatch, SlotWriter, WriteResult
from redstone_agent.transfer import (
    ByteSource,
    HeadThen,
    ResumeRefused,
    decompressing,
    detect,
    open_source,
    peek_into,
)
from redstone_agent.transfer.decompress import MAGIC_BYTES

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

    from redstone_agent.delta import DeltaHeader

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class SourceDigest:
    """The length and SHA-256 the source file itself must have (not what it produces)."""

    sha256: str
    length: int


@dataclass(frozen=True)
class ResumePoint:
    """How far a plain image durably reached its slot, and which version of the source it was.

    ``validator`` is what the source named its version by (HTTP strong ETag
    or Last-Modified; None for files): a resumed HTTP request sends it in
    ``If-Range`` so a changed file is answered whole and refused.
    """

    offset: int
    validator: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"offset": self.offset, "validator": self.validator}

    @classmethod
    def from_dict(cls, data: object) -> ResumePoint | None:
        """The point a journal record names, or None when it names none (or nonsense)."""
        if not isinstance(data, dict):
            return None
        offset, validator = data.get("offset"), data.get("validator")
        if type(offset) is not int or offset <= 0 or offset % ALIGNMENT:
            return None
        if validator is not None and not isinstance(validator, str):
            return None
        return cls(offset, validator)


Checkpoint = Callable[["ResumePoint | None"], None]
"""Told each new durable :class:`ResumePoint`, and None when there is none any more."""


class CheckedSource:
    """``readinto`` over a byte source that stops at ``expect.length`` and hashes what it passes.

    The cap is the size check of the signed file: a longer stream is cut there
    (its surplus never reaches the consumer; the transfer layer buffers at most
    one chunk of it), so an endless or swapped source costs at most one file's
    worth of bytes. A source that announces another size is refused unread.
    :meth:`verify` then settles length and hash.
    """

    def __init__(self, raw: ByteSource, expect: SourceDigest) -> None:
        if raw.size is not None and raw.size != expect.length:
            raise SourceMismatch(
                f"{raw.location} is {raw.size} bytes; the verified file is {expect.length}"
            )
        self._raw = raw
        self._expect = expect
        self._hash = hashlib.sha256()
        self.received = 0

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        room = min(len(view), self._expect.length - self.received)
        if room <= 0:
            return 0
        count = self._raw.readinto(view[:room]) or 0
        self._hash.update(view[:count])
        self.received += count
        return count

    def verify(self) -> None:
        """Read what the consumer left (up to the cap), then compare length and SHA-256."""
        spare = bytearray(1 << 16)
        while self.readinto(spare):
            pass
        where = self._raw.location
        if self.received != self._expect.length:
            raise SourceMismatch(
                f"{where} ended after {self.received} bytes; the verified file is "
                f"{self._expect.length}"
            )
        digest = self._hash.digest()
        if not hmac.compare_digest(digest, bytes.fromhex(self._expect.sha256)):
            raise SourceMismatch(
                f"{where} has sha256 {digest.hex()}, not the verified {self._expect.sha256}"
            )


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
    source_digest: SourceDigest | None = None,
    capacity: int | None = None,
    resume: ResumePoint | None = None,
    checkpoint: Checkpoint | None = None,
) -> WriteResult:
    """Stream ``source`` into ``device`` and verify length and hash.

    ``sha256``/``size`` describe the image the slot ends up holding;
    ``source_digest``, when given, the bytes read from ``source`` (checked
    before this returns); ``capacity``, the slot's size, is never written
    past. Nothing here touches the bootloader: the caller
    switches only after this returns, so an exception means the slot must be
    treated as garbage.

    ``checkpoint`` is told each durable :class:`ResumePoint` of a plain
    image. ``resume`` is one from an earlier, interrupted call for the same
    image into the same device: the write continues there unless the source
    cannot (``ResumeRefused``: a pipe, a changed file), the slot does not
    start like a plain image, or the resumed image fails its length/hash
    check; each of those starts again from byte 0 (``checkpoint(None)``
    first, so no stale point outlives the bytes it described).
    """
    options = _Options(
        sha256=sha256,
        size=size,
        active=active,
        progress=progress,
        cancel=cancel,
        verify_readback=verify_readback,
        retry=retry or RetryPolicy(),
        capacity=capacity,
        checkpoint=checkpoint,
    )
    if resume is not None and source_digest is None and size is not None:
        try:
            return _write(source, device, options, None, resume)
        except ResumeRefused as exc:
            log.warning("%s; writing slot %s from byte 0", exc, device)
        except ImageMismatch as exc:
            log.warning("the resumed image does not verify (%s); writing it from byte 0", exc)
        if checkpoint is not None:
            checkpoint(None)
    return _write(source, device, options, source_digest, None)


@dataclass(frozen=True)
class _Options:
    sha256: str
    size: int | None
    active: ActiveImage
    progress: Callable[[int, int | None], None] | None
    cancel: threading.Event | None
    verify_readback: bool
    retry: RetryPolicy
    capacity: int | None
    checkpoint: Checkpoint | None


def _write(
    source: str,
    device: Path,
    opts: _Options,
    source_digest: SourceDigest | None,
    resume: ResumePoint | None,
) -> WriteResult:
    """One pass: from byte 0, or from ``resume`` for a plain image."""
    with (
        SlotWriter(
            device,
            expected_size=opts.size,
            expected_sha256=opts.sha256,
            progress=opts.progress,
            cancel=opts.cancel,
            verify_readback=opts.verify_readback,
            capacity=opts.capacity,
        ) as sink,
        open_source(
            source,
            cancel=opts.cancel,
            retry=opts.retry,
            offset=resume.offset if resume else 0,
            validator=resume.validator if resume else None,
        ) as raw,
    ):
        checkpoint = opts.checkpoint

        def durable(offset: int) -> None:
            if checkpoint is not None:
                checkpoint(ResumePoint(offset, raw.validator))

        if resume is not None:
            _check_resumable(raw, device, opts.size, resume)
            sink.resume(resume.offset)
            sink.checkpoint = durable
            sink.write_from(raw)
            return sink.finish()
        checked = CheckedSource(raw, source_digest) if source_digest is not None else None
        fed = checked if checked is not None else raw
        head = peek_into(fed, len(DELTA_MAGIC))
        stream = HeadThen(head, fed)
        if head == DELTA_MAGIC:
            _apply(stream, opts.active, sink, sha256=opts.sha256, size=opts.size)
        else:
            if checked is None and detect(head) == "none":
                sink.checkpoint = durable  # plain: slot offsets are source offsets
            sink.write_from(decompressing(stream))
        if checked is not None:
            checked.verify()
        return sink.finish()


def _check_resumable(raw: ByteSource, device: Path, size: int | None, resume: ResumePoint) -> None:
    """Refuse (ResumeRefused) a resume whose source or slot is not a plain image of ``size``."""
    if raw.size != size:
        raise ResumeRefused(
            f"{raw.location} is {raw.size} bytes now, the image is {size}: "
            f"cannot continue at byte {resume.offset}"
        )
    try:
        with device.open("rb") as handle:
            head = handle.read(max(MAGIC_BYTES, len(DELTA_MAGIC)))
    except OSError as error:
        raise ResumeRefused(f"cannot read the start of {device}: {error.strerror}") from error
    if head.startswith(DELTA_MAGIC) or detect(head) != "none":
        raise ResumeRefused(
            f"slot {device} starts like a compressed image or a delta: only plain images resume"
        )


def _apply(
    stream: HeadThen, active: ActiveImage, sink: SlotWriter, *, sha256: str, size: int | None
) -> None:
    header = read_header(stream)
    _check_builds(header, sha256, size)
    with active.device.open("rb") as handle:
        window = SlotWindow(handle, header.source_size)
        apply_delta(
            stream,
            window,
            sink,
            header=header,
            source_sha256=active.known_digest(header.source_size),
            sink_verifies=True,  # the SlotWriter checks ``sha256``, the header's (above)
        )


def _check_builds(header: DeltaHeader, sha256: str, size: int | None) -> None:
    """Refuse, before writing a block, a delta whose header names another result image.

    The writer would catch it at the end too; saying so up front saves the
    transfer and names the real cause. The header is trusted only as far as
    the delta file's own hash is (checked when the stream ends).
    """
    built = header.target_sha256.hex()
    if built != sha256.lower() or (size is not None and header.target_size != size):
        expected = f"{sha256} ({size} bytes)" if size is not None else sha256
        raise SourceMismatch(
            f"delta builds image {built} ({header.target_size} bytes), not {expected}"
        )
