"""Fuzz the delta reader and streaming apply: a DeltaError or the exact new image.

Properties: make→apply rebuilds any tiny image pair; a mutated, truncated or
extended delta is refused with a one-line DeltaError or still yields exactly
the image its header names (never more than its target size, never another
exception); the header and operation records decode to what was encoded; the
bsdiff and compressed payload decoders stay within their announced sizes.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import struct
import tempfile
import zlib
from pathlib import Path

import pytest
import zstandard
from hypothesis import example, given
from hypothesis import strategies as st

from redstone_agent.delta import DeltaError, apply_delta, read_header
from redstone_agent.delta.bsdiff_payload import CONTROL_RECORD, apply_payload
from redstone_agent.delta.codecs import compress, decompress
from redstone_agent.delta.errors import DeltaFormatError
from redstone_agent.delta.format import (
    HEADER_SIZE,
    MAX_BLOCK_SIZE,
    MAX_TARGET_SIZE,
    MIN_BLOCK_SIZE,
    Codec,
    DeltaHeader,
    Extent,
    OpHeader,
    OpKind,
    decode_header,
    encode_header,
    encode_op,
)
from redstone_agent.delta.make import make_delta
from redstone_agent.delta.reader import iter_operations
from tests.fuzz.profile import fuzz, one_line, peak_memory_below

BLOCK = MIN_BLOCK_SIZE


class CappedSink:
    """Keeps what apply writes; refuses a byte past the header's target size."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()

    def write(self, data: bytes | memoryview, /) -> None:
        assert len(self.data) + len(data) <= self.limit, "apply wrote past the target size"
        self.data += data


def make(old: bytes, new: bytes) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        old_path, new_path = Path(tmp, "old"), Path(tmp, "new")
        old_path.write_bytes(old)
        new_path.write_bytes(new)
        out = io.BytesIO()
        make_delta(old_path, new_path, out, block_size=BLOCK, jobs=1)
        return out.getvalue()


def apply(delta: bytes, old: bytes) -> bytes:
    """Apply, checking the contract on success; DeltaError propagates."""
    try:
        header = read_header(io.BytesIO(delta))
    except DeltaError as exc:
        one_line(exc)
        raise
    sink = CappedSink(header.target_size)
    try:
        apply_delta(io.BytesIO(delta), io.BytesIO(old), sink)
    except DeltaError as exc:
        one_line(exc)
        raise
    assert len(sink.data) == header.target_size
    assert hashlib.sha256(sink.data).digest() == header.target_sha256
    return bytes(sink.data)


@st.composite
def image_pairs(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A tiny old image and a new one derived from it, so every operation kind can occur."""
    old = draw(st.binary(max_size=3 * BLOCK + 7))
    pieces = draw(
        st.lists(
            st.one_of(
                st.tuples(
                    st.just("copy"), st.integers(0, max(len(old) - 1, 0)), st.integers(1, 6000)
                ),
                st.tuples(st.just("zero"), st.just(0), st.integers(1, 6000)),
                st.tuples(st.just("random"), st.integers(0, 2**32), st.integers(1, 300)),
                st.tuples(
                    st.just("flip"), st.integers(0, max(len(old) - 1, 0)), st.integers(1, 5000)
                ),
            ),
            max_size=6,
        )
    )
    new = bytearray()
    for kind, at, length in pieces:
        if kind == "copy":
            new += old[at : at + length]
        elif kind == "zero":
            new += bytes(length)
        elif kind == "random":
            new += at.to_bytes(5, "little") * (length // 5 + 1)
        else:
            chunk = bytearray(old[at : at + length])
            for i in range(0, len(chunk), 97):
                chunk[i] ^= 0x5A
            new += chunk
    return old, bytes(new)


@fuzz(25, deadline_ms=10_000)
@given(image_pairs())
@example((b"", b""))
@example((b"\x00" * BLOCK, b"\x01" * (BLOCK + 1)))
def test_make_then_apply_rebuilds_the_new_image(pair: tuple[bytes, bytes]) -> None:
    old, new = pair
    assert apply(make(old, new), old) == new


# A small real delta with COPY, ZERO and REPLACE/BSDIFF blocks, made once.
_OLD = bytes(range(256)) * 40 + bytes(2000)
_NEW = _OLD[:BLOCK] + bytes(BLOCK) + b"new data " * 300 + _OLD[5000:9000]
_DELTA = make(_OLD, _NEW)

mutations = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.integers(0, len(_DELTA) - 1), st.integers(0, 255)),
        st.tuples(st.just("cut"), st.integers(0, len(_DELTA)), st.just(0)),
        st.tuples(st.just("insert"), st.integers(0, len(_DELTA)), st.integers(0, 255)),
    ),
    min_size=1,
    max_size=4,
)


def mutate(data: bytes, edits: list[tuple[str, int, int]]) -> bytes:
    out = bytearray(data)
    for kind, at, value in edits:
        at = min(at, len(out))
        if kind == "set" and at < len(out):
            out[at] = value
        elif kind == "cut":
            del out[at:]
        else:
            out[at:at] = bytes([value])
    return bytes(out)


def fix_header_crc(data: bytes) -> bytes:
    """Recompute the header CRC so a mutation reaches the fields behind it."""
    if len(data) < HEADER_SIZE:
        return data
    body = data[: HEADER_SIZE - 4]
    return body + struct.pack("<I", zlib.crc32(body)) + data[HEADER_SIZE:]


@fuzz(300)
@given(mutations, st.booleans())
@example([("cut", HEADER_SIZE + 10, 0)], False)
@example([("insert", len(_DELTA), 0)], False)
def test_mutated_delta_is_refused_or_yields_its_stated_image(
    edits: list[tuple[str, int, int]], recrc: bool
) -> None:
    delta = mutate(_DELTA, edits)
    if recrc:
        delta = fix_header_crc(delta)
    with contextlib.suppress(DeltaError):
        apply(delta, _OLD)


@fuzz(200)
@given(st.binary(min_size=HEADER_SIZE, max_size=HEADER_SIZE))
def test_any_header_bytes_decode_or_fail_cleanly(data: bytes) -> None:
    for candidate in (data, fix_header_crc(b"RSDELTA\x00\x01\x00" + data[10:])):
        try:
            header = decode_header(candidate)
        except DeltaFormatError as exc:
            one_line(exc)
        else:
            assert encode_header(header) == candidate


headers = st.builds(
    DeltaHeader,
    block_size=st.integers(MIN_BLOCK_SIZE, MAX_BLOCK_SIZE),
    source_size=st.integers(0, MAX_TARGET_SIZE),
    source_sha256=st.binary(min_size=32, max_size=32),
    target_size=st.integers(0, MAX_TARGET_SIZE),
    target_sha256=st.binary(min_size=32, max_size=32),
)


@fuzz(200)
@given(headers)
def test_header_round_trips(header: DeltaHeader) -> None:
    assert decode_header(encode_header(header)) == header


@st.composite
def valid_ops(draw: st.DrawFn) -> tuple[DeltaHeader, list[OpHeader]]:
    """A header with small sizes and operation records its limits allow."""
    block = draw(st.sampled_from([MIN_BLOCK_SIZE, 2 * MIN_BLOCK_SIZE]))
    source_size = draw(st.integers(1, 6 * block))
    target_size = draw(st.integers(0, 3 * block))
    header = DeltaHeader(block, source_size, bytes(32), target_size, bytes(32))
    ops = []
    for index in range(header.op_count):
        length = header.op_target_length(index)
        kind = draw(st.sampled_from(OpKind))
        sha = draw(st.binary(min_size=32, max_size=32))
        if kind is OpKind.ZERO:
            op = OpHeader(kind, Codec.NONE, length, 0, sha)
        elif kind is OpKind.COPY:
            offset = draw(st.integers(0, max(source_size - length, 0)))
            if offset + length > source_size:
                op = OpHeader(OpKind.ZERO, Codec.NONE, length, 0, sha)
            else:
                op = OpHeader(kind, Codec.NONE, length, 0, sha, (Extent(offset, length),))
        elif kind is OpKind.REPLACE:
            codec = draw(st.sampled_from(Codec))
            payload = length if codec is Codec.NONE else draw(st.integers(0, length))
            op = OpHeader(kind, codec, length, payload, sha)
        else:
            codec = Codec.ZSTD if kind is OpKind.ZSTD_PATCH else draw(st.sampled_from(Codec))
            offset = draw(st.integers(0, source_size - 1))
            extent = Extent(offset, draw(st.integers(1, min(source_size - offset, 4 * block))))
            op = OpHeader(kind, codec, length, draw(st.integers(1, length)), sha, (extent,))
        ops.append(op)
    return header, ops


@fuzz(150)
@given(valid_ops(), st.data())
def test_operation_records_round_trip_through_the_reader(
    case: tuple[DeltaHeader, list[OpHeader]], data: st.DataObject
) -> None:
    header, ops = case
    payloads = [
        data.draw(st.binary(min_size=op.payload_length, max_size=op.payload_length)) for op in ops
    ]
    body = encode_header(header) + b"".join(
        encode_op(o) + p for o, p in zip(ops, payloads, strict=True)
    )
    stream = io.BytesIO(body)
    assert read_header(stream) == header
    read = list(iter_operations(stream, header))
    assert [o.header for o in read] == ops
    assert [o.payload for o in read] == payloads


@fuzz(300)
@given(valid_ops(), st.binary(max_size=600))
def test_hostile_operations_after_a_valid_header(
    case: tuple[DeltaHeader, list[OpHeader]], tail: bytes
) -> None:
    """Garbage where the operations should be: refused, or verified output only."""
    header, _ops = case
    source = bytes(header.source_size)
    sink = CappedSink(header.target_size)
    try:
        apply_delta(
            io.BytesIO(encode_header(header) + tail),
            io.BytesIO(source),
            sink,
            source_sha256=bytes(32),
        )
    except DeltaError as exc:
        one_line(exc)


@fuzz(200)
@given(valid_ops(), st.data())
def test_well_formed_records_with_hostile_payloads(
    case: tuple[DeltaHeader, list[OpHeader]], data: st.DataObject
) -> None:
    """Records that pass validation, payloads and source that are garbage: decoders refuse."""
    header, ops = case
    payloads = [
        data.draw(st.binary(min_size=op.payload_length, max_size=op.payload_length)) for op in ops
    ]
    body = b"".join(encode_op(o) + p for o, p in zip(ops, payloads, strict=True))
    source = data.draw(st.binary(min_size=header.source_size, max_size=header.source_size))
    sink = CappedSink(header.target_size)
    try:
        apply_delta(
            io.BytesIO(encode_header(header) + body),
            io.BytesIO(source),
            sink,
            source_sha256=bytes(32),
        )
    except DeltaError as exc:
        one_line(exc)


def test_huge_declared_lengths_allocate_nothing_like_them() -> None:
    """A 16 MiB block whose 16 MiB payload is missing: refused after reading what is there."""
    header = DeltaHeader(MAX_BLOCK_SIZE, 0, bytes(32), MAX_TARGET_SIZE, bytes(32))
    op = OpHeader(OpKind.REPLACE, Codec.ZSTD, MAX_BLOCK_SIZE, MAX_BLOCK_SIZE, bytes(32))
    delta = encode_header(header) + encode_op(op) + b"tiny"
    with peak_memory_below(4 << 20), pytest.raises(DeltaError) as exc:
        apply_delta(io.BytesIO(delta), io.BytesIO(b""), CappedSink(0), source_sha256=bytes(32))
    assert "truncated" in one_line(exc.value)


# --------------------------------------------------------------------- payloads


@fuzz(300)
@given(
    st.sampled_from([Codec.ZSTD, Codec.XZ]),
    st.binary(max_size=300),
    st.integers(0, 3 * BLOCK),
)
@example(Codec.ZSTD, b"\x28\xb5\x2f\xfd\x00\x78\x01\x00\x00", 10)  # empty zstd frame, wrong size
def test_decompress_is_exact_or_refused(codec: Codec, payload: bytes, size: int) -> None:
    try:
        data = decompress(codec, payload, size, "fuzz")
    except DeltaFormatError as exc:
        one_line(exc)
    else:
        assert len(data) == size


@fuzz(100)
@given(st.sampled_from([Codec.ZSTD, Codec.XZ]), st.binary(max_size=2 * BLOCK), st.integers(-3, 3))
def test_decompress_round_trips_only_at_the_exact_size(
    codec: Codec, data: bytes, skew: int
) -> None:
    packed = compress(codec, data)
    size = max(len(data) + skew, 0)
    if size == len(data):
        assert decompress(codec, packed, size, "fuzz") == data
    else:
        with pytest.raises(DeltaFormatError):
            decompress(codec, packed, size, "fuzz")


def test_zstd_bomb_costs_no_more_than_the_announced_size() -> None:
    bomb = zstandard.ZstdCompressor(level=3).compress(bytes(64 << 20))
    with peak_memory_below(8 << 20), pytest.raises(DeltaFormatError):
        decompress(Codec.ZSTD, bomb, BLOCK, "bomb")


signed = st.one_of(st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1).map(lambda v: v | 1 << 63))


@fuzz(400)
@given(
    st.binary(max_size=64),
    st.lists(st.tuples(signed, signed, signed), max_size=6),
    st.binary(max_size=64),
    st.binary(max_size=64),
    st.integers(0, 2),
)
@example(b"", [(1 << 63, 0, 0)], b"", b"", 0)  # "negative zero" length
def test_bsdiff_payload_is_validated_before_the_c_patcher(
    old: bytes,
    control: list[tuple[int, int, int]],
    diff: bytes,
    extra: bytes,
    count_skew: int,
) -> None:
    """Arbitrary control records, uncompressed: refused, or exactly target_length bytes."""
    target = len(diff) + len(extra)
    records = b"".join(struct.pack("<QQQ", *r) for r in control)
    count = len(control) + (count_skew if count_skew < 2 else 0)
    body = records[: count * CONTROL_RECORD].ljust(count * CONTROL_RECORD, b"\0")
    payload = struct.pack("<III", count, len(diff), len(extra)) + body + diff + extra
    try:
        result = apply_payload(old, payload, Codec.NONE, target, "fuzz")
    except DeltaFormatError as exc:
        one_line(exc)
    else:
        assert len(result) == target
