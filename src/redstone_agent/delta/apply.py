"""Streaming apply: delta stream + active slot in, verified new image out, in order.

Memory is bounded by the block size: one operation's payload, source extents
(at most SOURCE_FACTOR blocks) and output are held at a time. Every
operation's output is hashed and compared before a single byte of it reaches
the sink, so the sink only ever sees verified data, strictly in order, and
never more than the header's target size.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from redstone_agent.delta.bsdiff_payload import apply_payload
from redstone_agent.delta.codecs import decompress
from redstone_agent.delta.errors import (
    DeltaVerificationError,
    SourceMismatchError,
    TargetTooLargeError,
)
from redstone_agent.delta.format import HEADER_SIZE, DeltaHeader, OpHeader, OpKind
from redstone_agent.delta.reader import Operation, iter_operations, read_header
from redstone_agent.delta.stream import Readable, SourceImage, read_source, stream_size

log = logging.getLogger(__name__)

_HASH_CHUNK = 256 << 10


class DeltaSink(Protocol):
    """Receives the new image strictly in order from offset 0 (e.g. the slot writer)."""

    def write(self, data: bytes | memoryview, /) -> object: ...


@dataclass
class ApplyReport:
    """What an apply did: the header it honoured and how the image was rebuilt."""

    header: DeltaHeader
    delta_bytes: int = 0
    ops: Counter[str] = field(default_factory=Counter)


def sha256_of(source: SourceImage, size: int) -> bytes:
    """Hash the first ``size`` bytes of a seekable stream in bounded reads."""
    digest = hashlib.sha256()
    source.seek(0)
    remaining = size
    while remaining:
        chunk = source.read(min(remaining, _HASH_CHUNK))
        if not chunk:
            break
        digest.update(chunk)
        remaining -= len(chunk)
    return digest.digest()


def check_target_size(header: DeltaHeader, limit: int, what: str = "allowed") -> None:
    """Refuse, before anything is written, a delta whose target is larger than ``limit``.

    A delta is tiny next to what it can claim to build (a ZERO block is a
    44-byte record), so without a bound a hostile or mistaken delta fills a
    disk before the final hash can fail. ``what`` names the bound.
    """
    if header.target_size > limit:
        raise TargetTooLargeError(
            f"delta would write {header.target_size} bytes, more than the {limit} {what}"
        )


def check_source(
    header: DeltaHeader, source: SourceImage, source_sha256: bytes | None = None
) -> None:
    """Refuse a source image that is not the one the delta was made from.

    The size is always checked. The hash is either the caller's known hash of
    the active slot (cheap: the installer recorded it when it verified that
    slot) or, when ``source_sha256`` is None, computed by reading the whole
    source once, sequentially, before anything is written.
    """
    size = stream_size(source)
    if size != header.source_size:
        raise SourceMismatchError(
            f"delta is for a {header.source_size}-byte source, the active image has {size} bytes"
        )
    actual = source_sha256 if source_sha256 is not None else sha256_of(source, size)
    if not hmac.compare_digest(actual, header.source_sha256):
        raise SourceMismatchError(
            f"delta is for source sha256 {header.source_sha256.hex()}, "
            f"the active image is {actual.hex()}"
        )


def apply_delta(
    delta_stream: Readable,
    source: SourceImage,
    sink: DeltaSink,
    *,
    source_sha256: bytes | None = None,
    header: DeltaHeader | None = None,
    progress: Callable[[int, int], None] | None = None,
    max_target_size: int | None = None,
    sink_verifies: bool = False,
) -> ApplyReport:
    """Rebuild the new image from ``delta_stream`` and ``source`` into ``sink``.

    ``header``: pass it if the caller already consumed the header from the
    stream with :func:`read_header`. ``source_sha256``: the known hash of the
    active slot; if omitted the source is hashed first (see check_source).
    ``max_target_size``: the most the sink can take (the slot, the free
    space); a larger target is refused before the source is even read.
    ``progress(done, total)`` is called after each operation with target bytes.
    ``sink_verifies``: the sink itself checks the whole output against the
    header's target SHA-256 (a slot writer expecting that digest), so the
    whole-target hash here would be a second pass over the same bytes; each
    operation's own hash is checked either way.
    Raises a DeltaError subclass on any mismatch; the sink then holds a
    verified prefix of the new image and must be discarded.
    """
    if header is None:
        header = read_header(delta_stream)
    if max_target_size is not None:
        check_target_size(header, max_target_size, "bytes the output can take")
    check_source(header, source, source_sha256)
    report = ApplyReport(header, delta_bytes=HEADER_SIZE)
    target_digest = None if sink_verifies else hashlib.sha256()
    done = 0
    for operation in iter_operations(delta_stream, header):
        output = _run(operation, source)
        if not hmac.compare_digest(_digest(operation.header, output), operation.header.sha256):
            raise DeltaVerificationError(f"{operation.where}: output does not match its hash")
        if target_digest is not None:
            target_digest.update(output)
        sink.write(output)
        done += len(output)
        report.delta_bytes += operation.encoded_size
        report.ops[operation.header.kind.name] += 1
        if progress is not None:
            progress(done, header.target_size)
    if target_digest is not None and not hmac.compare_digest(
        target_digest.digest(), header.target_sha256
    ):
        raise DeltaVerificationError("rebuilt image does not match the delta's target sha256")
    log.info("delta applied: %d bytes, operations %s", done, dict(report.ops))
    return report


class _Discard:
    def write(self, data: bytes | memoryview, /) -> None:
        """Verified output nobody needs."""


def verify_delta(
    delta_stream: Readable,
    source: SourceImage,
    *,
    source_sha256: bytes | None = None,
    header: DeltaHeader | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ApplyReport:
    """Check that ``delta_stream`` rebuilds its target from ``source``, writing nothing.

    Everything :func:`apply_delta` checks: the source's size and hash, every
    operation's output hash, the whole target hash. Memory as for apply.
    """
    return apply_delta(
        delta_stream,
        source,
        _Discard(),
        source_sha256=source_sha256,
        header=header,
        progress=progress,
    )


def _digest(op: OpHeader, output: bytes) -> bytes:
    """SHA-256 of an operation's output; a ZERO block's is the same for every block of its
    length (a third of a sparse rootfs), so it is hashed once."""
    if op.kind is OpKind.ZERO:
        return _zeros_digest(len(output))
    return hashlib.sha256(output).digest()


@functools.lru_cache(maxsize=8)
def _zeros_digest(length: int) -> bytes:
    return hashlib.sha256(bytes(length)).digest()


def _run(operation: Operation, source: SourceImage) -> bytes:
    op, payload, where = operation.header, operation.payload, operation.where
    if op.kind is OpKind.ZERO:
        return bytes(op.target_length)
    if op.kind is OpKind.REPLACE:
        return decompress(op.codec, payload, op.target_length, where)
    old = b"".join(read_source(source, e.offset, e.length) for e in op.extents)
    if op.kind is OpKind.COPY:
        return old
    if op.kind is OpKind.ZSTD_PATCH:
        return decompress(op.codec, payload, op.target_length, where, dictionary=old)
    return apply_payload(old, payload, op.codec, op.target_length, where)
