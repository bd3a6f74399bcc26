"""Generate a delta from two image files, block by block, on all cores.

The parent hashes both images, builds the source anchor index, writes the
header and then appends operation records strictly in order. Blocks are
encoded by forked worker processes that share the index copy-on-write; at
most two blocks per worker are in flight, so memory stays bounded by the
block size (plus the index) whatever the image size.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.pool import AsyncResult
from pathlib import Path
from typing import BinaryIO

from redstone_agent.delta.apply import sha256_of
from redstone_agent.delta.encode import EncodedOp, encode_block
from redstone_agent.delta.errors import DeltaError
from redstone_agent.delta.format import (
    DEFAULT_BLOCK_SIZE,
    MAX_BLOCK_SIZE,
    MAX_TARGET_SIZE,
    MIN_BLOCK_SIZE,
    DeltaHeader,
    encode_header,
)
from redstone_agent.delta.index import SourceIndex
from redstone_agent.delta.stream import stream_size

log = logging.getLogger(__name__)

MAKE_SOURCE_BLOCKS = 2
"""Source bytes a block is diffed against, in blocks (the format allows SOURCE_FACTOR).
On a rootfs upgrade 4 blocks made 1.4 % smaller deltas than 2 for a quarter more
time: the suffix array grows with the window (tools/bench/delta.py)."""


@dataclass
class MakeReport:
    """What make produced."""

    header: DeltaHeader
    delta_size: int = 0
    ops: Counter[str] = field(default_factory=Counter)


@dataclass
class _Job:
    """Everything a worker needs; inherited by fork, so the index is shared, not copied."""

    old_path: Path
    new_path: Path
    header: DeltaHeader
    index: SourceIndex
    source_budget: int
    files: tuple[BinaryIO, BinaryIO] | None = None

    def open(self) -> None:
        self.files = (self.old_path.open("rb"), self.new_path.open("rb"))

    def close(self) -> None:
        for file in self.files or ():
            file.close()
        self.files = None

    def encode(self, block_no: int) -> EncodedOp:
        if self.files is None:
            self.open()
        assert self.files is not None
        old, new = self.files
        new.seek(block_no * self.header.block_size)
        block = new.read(self.header.op_target_length(block_no))

        def read_source(offset: int, length: int) -> bytes:
            old.seek(offset)
            return old.read(length)

        return encode_block(block, self.index, read_source, self.source_budget)


#: The job of the make in progress; forked workers inherit it.
_CURRENT: dict[str, _Job] = {}


def _encode_in_worker(block_no: int) -> EncodedOp:
    return _CURRENT["job"].encode(block_no)


def _size_and_sha256(path: Path) -> tuple[int, bytes]:
    with path.open("rb") as file:
        size = stream_size(file)
        return size, sha256_of(file, size)


def _check_inputs(old: Path, new: Path, block_size: int) -> None:
    if not MIN_BLOCK_SIZE <= block_size <= MAX_BLOCK_SIZE:
        raise DeltaError(f"block size {block_size} outside {MIN_BLOCK_SIZE}..{MAX_BLOCK_SIZE}")
    for path in (old, new):
        if not path.is_file() and not path.is_block_device():
            raise DeltaError(f"{path}: not a file or block device")
        if path.stat().st_size > MAX_TARGET_SIZE:
            raise DeltaError(f"{path}: larger than {MAX_TARGET_SIZE} bytes")


def make_delta(
    old: Path,
    new: Path,
    out: BinaryIO,
    *,
    block_size: int = DEFAULT_BLOCK_SIZE,
    jobs: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> MakeReport:
    """Write a delta turning image ``old`` into image ``new`` to ``out`` (written forward only).

    ``jobs`` worker processes encode blocks (default: all cores).
    ``progress(done, total)`` is called with the target bytes encoded so far.
    """
    _check_inputs(old, new, block_size)
    jobs = max(1, jobs or os.cpu_count() or 1)
    source_size, source_sha = _size_and_sha256(old)
    target_size, target_sha = _size_and_sha256(new)
    header = DeltaHeader(block_size, source_size, source_sha, target_size, target_sha)
    with old.open("rb") as source:

        def read(offset: int, length: int) -> bytes:
            source.seek(offset)
            return source.read(length)

        index = SourceIndex.build(read, source_size)
    log.info("indexed %d-byte source: %d anchors", source_size, len(index.keys))
    job = _Job(old, new, header, index, MAKE_SOURCE_BLOCKS * block_size)
    report = MakeReport(header)
    encoded = encode_header(header)
    out.write(encoded)
    report.delta_size = len(encoded)

    def emit(op: EncodedOp) -> None:
        out.write(op.data)
        report.delta_size += len(op.data)
        report.ops[op.kind.name] += 1
        if progress is not None:
            done = sum(report.ops.values())
            progress(min(done * block_size, header.target_size), header.target_size)

    if jobs == 1 or header.op_count < 2:
        try:
            for block_no in range(header.op_count):
                emit(job.encode(block_no))
        finally:
            job.close()
    else:
        _encode_in_pool(job, jobs, emit)
    log.info("delta of %d bytes, operations %s", report.delta_size, dict(report.ops))
    return report


def _encode_in_pool(job: _Job, jobs: int, emit: Callable[[EncodedOp], None]) -> None:
    """Encode on ``jobs`` forked workers, emitting in block order, 2 blocks per worker in flight."""
    _CURRENT["job"] = job
    try:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            pending: deque[AsyncResult[EncodedOp]] = deque()
            for block_no in range(job.header.op_count):
                pending.append(pool.apply_async(_encode_in_worker, (block_no,)))
                if len(pending) >= 2 * jobs:
                    emit(pending.popleft().get())
            while pending:
                emit(pending.popleft().get())
    finally:
        _CURRENT.clear()
