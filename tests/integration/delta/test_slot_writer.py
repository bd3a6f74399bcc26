"""The installer's contract: apply_delta streaming into the real SlotWriter."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import random
from pathlib import Path

import pytest

from redstone_agent.delta import DeltaVerificationError, apply_delta, read_header
from redstone_agent.delta.format import HEADER_SIZE, encode_header, encode_op
from redstone_agent.delta.make import make_delta
from redstone_agent.delta.reader import iter_operations
from redstone_agent.slots.writer import SlotWriter


def _delta(tmp_path: Path) -> tuple[bytes, bytes, bytes]:
    rng = random.Random(9)
    old = rng.randbytes(2 << 20)
    new = old[:500_000] + rng.randbytes(70_000) + old[600_000:] + bytes(200_000)
    (tmp_path / "old").write_bytes(old)
    (tmp_path / "new").write_bytes(new)
    out = io.BytesIO()
    make_delta(tmp_path / "old", tmp_path / "new", out, block_size=64 << 10, jobs=2)
    return old, new, out.getvalue()


def test_delta_installs_through_slot_writer(tmp_path: Path) -> None:
    old, new, delta = _delta(tmp_path)
    stream = io.BytesIO(delta)
    header = read_header(stream)
    slot = tmp_path / "slot_b.img"
    with (
        (tmp_path / "old").open("rb") as source,
        SlotWriter(
            slot,
            expected_size=header.target_size,
            expected_sha256=header.target_sha256.hex(),
        ) as sink,
    ):
        apply_delta(stream, source, sink, header=header, source_sha256=hashlib.sha256(old).digest())
        result = sink.finish()
    assert result.sha256 == hashlib.sha256(new).hexdigest()
    assert slot.read_bytes() == new


def test_bad_block_never_reaches_the_slot(tmp_path: Path) -> None:
    _, new, delta = _delta(tmp_path)
    stream = io.BytesIO(delta)
    header = read_header(stream)
    ops = list(iter_operations(stream, header))
    victim = len(ops) // 2
    forged_op = dataclasses.replace(ops[victim].header, sha256=b"\x01" * 32)
    ops_bytes = b"".join(
        encode_op(forged_op if op.index == victim else op.header) + op.payload for op in ops
    )
    forged = encode_header(header) + ops_bytes
    assert len(forged) == len(delta) and forged[:HEADER_SIZE] == delta[:HEADER_SIZE]
    slot = tmp_path / "slot_b.img"
    with (
        pytest.raises(DeltaVerificationError),
        (tmp_path / "old").open("rb") as source,
        SlotWriter(
            slot, expected_size=header.target_size, expected_sha256=header.target_sha256.hex()
        ) as sink,
    ):
        apply_delta(io.BytesIO(forged), source, sink)
    written = slot.read_bytes()
    assert len(written) <= victim * header.block_size
    assert new.startswith(written)
