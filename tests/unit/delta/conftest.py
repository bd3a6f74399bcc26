"""Fixtures for the delta tests: real deltas made from bytes, a sink that checks the contract."""

from __future__ import annotations

import hashlib
import io
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from redstone_agent.delta.make import make_delta

BLOCK = 4096

MakeBytes = Callable[..., bytes]


class RecordingSink:
    """A sink that keeps what it got and fails the test if the applier oversteps."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.largest_write = 0

    def write(self, data: bytes | memoryview, /) -> None:
        assert len(self.data) + len(data) <= self.limit, "applier wrote past the target size"
        self.largest_write = max(self.largest_write, len(data))
        self.data += data


class TrickleStream:
    """A non-seekable stream that hands out at most ``step`` bytes per read, like a socket."""

    def __init__(self, data: bytes, step: int = 1000) -> None:
        self._buffer = io.BytesIO(data)
        self._step = step
        self.largest_request = 0

    def read(self, size: int = -1, /) -> bytes:
        self.largest_request = max(self.largest_request, size)
        assert size >= 0, "applier asked for an unbounded read"
        return self._buffer.read(min(size, self._step))


def random_bytes(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def code_like(seed: int, size: int) -> bytes:
    """Compressible but varied data, a stand-in for machine code."""
    rng = random.Random(seed)
    words = [rng.randbytes(rng.randint(2, 9)) for _ in range(300)]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(words)
    return bytes(out[:size])


def shuffled(data: bytes, piece: int) -> bytes:
    """The same bytes cut into pieces and reordered: what a relinked object looks like."""
    pieces = [data[i : i + piece] for i in range(0, len(data), piece)]
    random.Random(len(data)).shuffle(pieces)
    return b"".join(pieces)


@pytest.fixture
def make_bytes(tmp_path: Path) -> MakeBytes:
    """Run the real make on two byte strings and return the delta."""

    def run(old: bytes, new: bytes, block_size: int = BLOCK, jobs: int = 1) -> bytes:
        old_path, new_path = tmp_path / "old.img", tmp_path / "new.img"
        old_path.write_bytes(old)
        new_path.write_bytes(new)
        out = io.BytesIO()
        make_delta(old_path, new_path, out, block_size=block_size, jobs=jobs)
        return out.getvalue()

    return run


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()
