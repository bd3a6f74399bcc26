"""Streaming apply: round trips through a trickling stream, and every hostile delta refused."""

from __future__ import annotations

import dataclasses
import io
import tracemalloc

import pytest

from redstone_agent.delta import (
    DeltaError,
    DeltaFormatError,
    DeltaTruncatedError,
    DeltaVerificationError,
    SourceMismatchError,
    TargetTooLargeError,
    apply_delta,
    read_header,
    verify_delta,
)
from redstone_agent.delta.format import (
    HEADER_SIZE,
    Codec,
    DeltaHeader,
    Extent,
    OpHeader,
    OpKind,
    encode_header,
    encode_op,
)
from redstone_agent.delta.reader import iter_operations

from .conftest import (
    BLOCK,
    MakeBytes,
    RecordingSink,
    TrickleStream,
    code_like,
    random_bytes,
    sha,
    shuffled,
)

OLD = random_bytes(11, 40 * BLOCK + 123)
NEW = (
    OLD[: 5 * BLOCK]  # unchanged: COPY
    + bytes(3 * BLOCK)  # ZERO
    + OLD[9 * BLOCK : 15 * BLOCK - 7]  # moved by 7 bytes: BSDIFF
    + b"patched" * 30
    + OLD[15 * BLOCK : 25 * BLOCK]
    + random_bytes(12, 4 * BLOCK)  # brand new: REPLACE
    + OLD[30 * BLOCK : 33 * BLOCK]
    + shuffled(OLD[33 * BLOCK : 36 * BLOCK], 48)  # rebuilt from old pieces: ZSTD_PATCH
    + OLD[36 * BLOCK :]
)


def _apply(delta: bytes, source: bytes, **kwargs: object) -> RecordingSink:
    header = read_header(io.BytesIO(delta))
    sink = RecordingSink(header.target_size)
    apply_delta(TrickleStream(delta), io.BytesIO(source), sink, **kwargs)  # type: ignore[arg-type]
    return sink


def _ops(delta: bytes) -> list[tuple[OpHeader, bytes]]:
    stream = io.BytesIO(delta)
    header = read_header(stream)
    return [(op.header, op.payload) for op in iter_operations(stream, header)]


def _forge(header: DeltaHeader, ops: list[tuple[OpHeader, bytes]]) -> bytes:
    return encode_header(header) + b"".join(encode_op(op) + payload for op, payload in ops)


def test_round_trip_uses_every_kind(make_bytes: MakeBytes) -> None:
    delta = make_bytes(OLD, NEW)
    kinds = {op.kind for op, _ in _ops(delta)}
    assert kinds == set(OpKind)
    stream = TrickleStream(delta, step=777)
    sink = RecordingSink(len(NEW))
    report = apply_delta(stream, io.BytesIO(OLD), sink)
    assert bytes(sink.data) == NEW
    assert sink.largest_write <= BLOCK
    assert stream.largest_request <= 1 << 20
    assert report.delta_bytes == len(delta)
    assert len(delta) < len(NEW) // 4


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"", b""),
        (b"", b"brand new image"),
        (b"old image", b""),
        (OLD, OLD),
        (OLD[:1000], OLD),
        (OLD, OLD[:1000]),
    ],
)
def test_edge_sizes(make_bytes: MakeBytes, old: bytes, new: bytes) -> None:
    assert bytes(_apply(make_bytes(old, new), old).data) == new


def test_parallel_make_is_deterministic(make_bytes: MakeBytes) -> None:
    assert make_bytes(OLD, NEW, jobs=2) == make_bytes(OLD, NEW, jobs=1)


def test_header_can_be_read_first_then_applied(make_bytes: MakeBytes) -> None:
    stream = io.BytesIO(make_bytes(OLD, NEW))
    header = read_header(stream)
    assert (header.source_size, header.source_sha256) == (len(OLD), sha(OLD))
    assert (header.target_size, header.target_sha256) == (len(NEW), sha(NEW))
    sink = RecordingSink(len(NEW))
    apply_delta(stream, io.BytesIO(OLD), sink, header=header, source_sha256=sha(OLD))
    assert bytes(sink.data) == NEW


@pytest.mark.parametrize(
    ("source", "known", "message"),
    [
        (OLD + b"x", None, "-byte source"),
        (OLD[:-1] + b"x", None, "source sha256"),
        (OLD, b"\x00" * 32, "source sha256"),
    ],
)
def test_wrong_source_refused_before_writing(
    make_bytes: MakeBytes, source: bytes, known: bytes | None, message: str
) -> None:
    delta = make_bytes(OLD, NEW)
    sink = RecordingSink(len(NEW))
    with pytest.raises(SourceMismatchError, match=message):
        apply_delta(io.BytesIO(delta), io.BytesIO(source), sink, source_sha256=known)
    assert sink.data == b""


def test_known_hash_skips_hashing_but_blocks_still_verify(make_bytes: MakeBytes) -> None:
    delta = make_bytes(OLD, NEW)
    damaged = bytearray(OLD)
    damaged[BLOCK] ^= 0xFF  # inside the first COPY extent
    sink = RecordingSink(len(NEW))
    with pytest.raises(DeltaVerificationError, match="operation 1"):
        apply_delta(io.BytesIO(delta), io.BytesIO(bytes(damaged)), sink, source_sha256=sha(OLD))
    assert bytes(sink.data) == NEW[:BLOCK]


def test_lying_operation_hash_stops_before_that_block(make_bytes: MakeBytes) -> None:
    ops = _ops(make_bytes(OLD, NEW))
    header = read_header(io.BytesIO(make_bytes(OLD, NEW)))
    victim = 9
    op, payload = ops[victim]
    ops[victim] = (dataclasses.replace(op, sha256=sha(b"lie")), payload)
    sink = RecordingSink(len(NEW))
    with pytest.raises(DeltaVerificationError, match=f"operation {victim} "):
        apply_delta(io.BytesIO(_forge(header, ops)), io.BytesIO(OLD), sink)
    assert bytes(sink.data) == NEW[: victim * BLOCK]


def test_lying_target_hash_fails_at_the_end(make_bytes: MakeBytes) -> None:
    delta = make_bytes(OLD, NEW)
    header = dataclasses.replace(read_header(io.BytesIO(delta)), target_sha256=sha(b"other"))
    forged = encode_header(header) + delta[HEADER_SIZE:]
    with pytest.raises(DeltaVerificationError, match="target sha256"):
        _apply(forged, OLD)


def test_zero_block_lying_about_its_hash_stops_there() -> None:
    """A ZERO block's hash is computed once per length: a lie is still caught."""
    block = 4096
    header = DeltaHeader(block, len(OLD), sha(OLD), 3 * block, sha(bytes(3 * block)))
    good = OpHeader(OpKind.ZERO, Codec.NONE, block, 0, sha(bytes(block)))
    lying = dataclasses.replace(good, sha256=sha(b"lie"))
    sink = RecordingSink(3 * block)
    forged = _forge(header, [(good, b""), (good, b""), (lying, b"")])
    with pytest.raises(DeltaVerificationError, match="operation 2 "):
        apply_delta(io.BytesIO(forged), io.BytesIO(OLD), sink)
    assert bytes(sink.data) == bytes(2 * block)


def test_a_verifying_sink_is_left_the_whole_target_check(make_bytes: MakeBytes) -> None:
    """``sink_verifies``: no second pass over the output here; a slot writer expecting the
    header's digest is what refuses a lying header (tests/unit/slots)."""
    delta = make_bytes(OLD, NEW)
    header = dataclasses.replace(read_header(io.BytesIO(delta)), target_sha256=sha(b"other"))
    forged = encode_header(header) + delta[HEADER_SIZE:]
    sink = RecordingSink(len(NEW))
    apply_delta(io.BytesIO(forged), io.BytesIO(OLD), sink, sink_verifies=True)
    assert bytes(sink.data) == NEW  # every block checked by its own hash


@pytest.mark.parametrize("kind", [OpKind.REPLACE, OpKind.BSDIFF])
def test_corrupt_payload_is_refused(make_bytes: MakeBytes, kind: OpKind) -> None:
    delta = bytearray(make_bytes(OLD, NEW))
    stream = io.BytesIO(bytes(delta))
    header = read_header(stream)
    position = HEADER_SIZE
    for operation in iter_operations(stream, header):
        if operation.header.kind is kind:
            delta[
                position + operation.header.encoded_size + operation.header.payload_length // 2
            ] ^= 1
            break
        position += operation.encoded_size
    with pytest.raises(DeltaError):
        _apply(bytes(delta), OLD)


def test_every_truncation_is_detected(make_bytes: MakeBytes) -> None:
    delta = make_bytes(OLD, NEW)
    cuts = sorted({*range(0, 200), *range(200, len(delta), 97), len(delta) - 1})
    for cut in cuts:
        with pytest.raises(DeltaTruncatedError):
            _apply(delta[:cut], OLD)


def test_trailing_data_is_refused(make_bytes: MakeBytes) -> None:
    with pytest.raises(DeltaFormatError, match="trailing data"):
        _apply(make_bytes(OLD, NEW) + b"\x00", OLD)


HEADER = DeltaHeader(BLOCK, len(OLD), sha(OLD), 2 * BLOCK, sha(OLD[: 2 * BLOCK]))
GOOD_FIRST = (
    OpHeader(OpKind.COPY, Codec.NONE, BLOCK, 0, sha(OLD[:BLOCK]), (Extent(0, BLOCK),)),
    b"",
)


@pytest.mark.parametrize(
    ("op", "message"),
    [
        (OpHeader(OpKind.REPLACE, Codec.ZSTD, BLOCK, 0xFFFFFFFF, b"h" * 32), "payload of"),
        (OpHeader(OpKind.ZERO, Codec.NONE, 0xFFFFFFFF, 0, b"h" * 32), "produces 4294967295"),
        (
            OpHeader(OpKind.COPY, Codec.NONE, BLOCK, 0, b"h" * 32, (Extent(len(OLD), BLOCK),)),
            "outside",
        ),
        (
            OpHeader(OpKind.COPY, Codec.NONE, BLOCK, 0, b"h" * 32, (Extent((1 << 64) - 1, BLOCK),)),
            "outside",
        ),
        (
            OpHeader(OpKind.BSDIFF, Codec.ZSTD, BLOCK, 10, b"h" * 32, (Extent(0, len(OLD)),)),
            "source bytes",
        ),
    ],
)
def test_hostile_operation_rejected_before_reading_its_payload(op: OpHeader, message: str) -> None:
    forged = _forge(HEADER, [GOOD_FIRST, (op, b"")])
    stream = TrickleStream(forged)
    sink = RecordingSink(HEADER.target_size)
    with pytest.raises(DeltaFormatError, match=message):
        apply_delta(stream, io.BytesIO(OLD), sink)
    assert bytes(sink.data) == OLD[:BLOCK]
    assert stream.largest_request <= 1 << 20


def test_huge_extent_count_rejected_before_reading_extents() -> None:
    fixed = encode_op(OpHeader(OpKind.COPY, Codec.NONE, BLOCK, 0, b"h" * 32))
    fixed = fixed[:2] + (0xFFFF).to_bytes(2, "little") + fixed[4:]
    stream = TrickleStream(encode_header(HEADER) + fixed)
    with pytest.raises(DeltaFormatError, match="65535 extents"):
        apply_delta(stream, io.BytesIO(OLD), RecordingSink(HEADER.target_size))


def test_huge_claimed_target_is_refused_early() -> None:
    header = DeltaHeader(BLOCK, len(OLD), sha(OLD), 1 << 50, b"t" * 32)
    with pytest.raises(DeltaFormatError, match="target size"):
        apply_delta(io.BytesIO(encode_header(header)), io.BytesIO(OLD), RecordingSink(0))


def test_memory_is_bounded_by_block_size_not_image_size(make_bytes: MakeBytes) -> None:
    block = 64 << 10
    old = code_like(21, 8 << 20)
    new = bytearray(old)
    for at in range(0, len(new), 300_000):
        new[at : at + 50] = random_bytes(at, 50)
    delta = make_bytes(old, bytes(new), block_size=block)
    counting = _CountingSink(len(new))
    tracemalloc.start()
    try:
        apply_delta(TrickleStream(delta, 65536), io.BytesIO(old), counting)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert counting.received == len(new)
    # a few blocks in flight plus fixed 256 KiB read buffers, whatever the image size
    assert peak < 16 * block + (512 << 10), f"peak {peak} bytes for {block}-byte blocks"


class _CountingSink:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.received = 0

    def write(self, data: bytes | memoryview, /) -> None:
        self.received += len(data)
        assert self.received <= self.limit


class _ShortReadSource(io.RawIOBase):
    """A raw device window that returns at most 1000 bytes per read, as raw IO may."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._position = offset if whence == io.SEEK_SET else len(self._data) + offset
        return self._position

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        chunk = self._data[self._position : self._position + min(len(buffer), 1000)]
        buffer[: len(chunk)] = chunk
        self._position += len(chunk)
        return len(chunk)


def test_short_reads_from_a_raw_source_are_fine(make_bytes: MakeBytes) -> None:
    delta = make_bytes(OLD, NEW)
    sink = RecordingSink(len(NEW))
    apply_delta(io.BytesIO(delta), _ShortReadSource(OLD), sink)
    assert bytes(sink.data) == NEW


class _Unreadable(io.BytesIO):
    def read(self, size: int | None = -1, /) -> bytes:
        raise AssertionError("the source was read")


def _zero_bomb(target_size: int, block: int) -> bytes:
    """A tiny delta of ZERO blocks, each with its true hash, that builds ``target_size`` bytes."""
    header = DeltaHeader(block, len(OLD), sha(OLD), target_size, sha(b"not the zeros"))
    zero = OpHeader(OpKind.ZERO, Codec.NONE, block, 0, sha(bytes(block)))
    return encode_header(header) + encode_op(zero) * header.op_count


def test_target_larger_than_the_output_can_take_is_refused_before_writing() -> None:
    """Issue 15 item 4: a few KB of ZERO records with valid hashes wrote far more than the
    caller could take before the final hash failed; the bound is checked on the header,
    before the source is read or a byte reaches the sink."""
    bomb = _zero_bomb(1 << 30, 1 << 20)
    assert len(bomb) < 50_000
    sink = RecordingSink(1 << 30)
    with pytest.raises(
        TargetTooLargeError,
        match=r"^delta would write 1073741824 bytes, more than the 4194304 bytes the output",
    ):
        apply_delta(io.BytesIO(bomb), _Unreadable(OLD), sink, max_target_size=4 << 20)
    assert sink.data == b""


def test_target_within_the_bound_applies(make_bytes: MakeBytes) -> None:
    sink = _apply(make_bytes(OLD, NEW), OLD, max_target_size=len(NEW))
    assert bytes(sink.data) == NEW


def test_verify_checks_every_hash_and_writes_nothing(make_bytes: MakeBytes) -> None:
    delta = make_bytes(OLD, NEW)
    report = verify_delta(TrickleStream(delta), io.BytesIO(OLD))
    assert sum(report.ops.values()) == report.header.op_count
    assert report.delta_bytes == len(delta)
    with pytest.raises(SourceMismatchError):
        verify_delta(io.BytesIO(delta), io.BytesIO(NEW))
    bomb = _zero_bomb(8 * BLOCK, BLOCK)
    with pytest.raises(DeltaVerificationError, match="target sha256"):
        verify_delta(io.BytesIO(bomb), io.BytesIO(OLD))
    ops = _ops(delta)
    ops[3] = (dataclasses.replace(ops[3][0], sha256=sha(b"lie")), ops[3][1])
    with pytest.raises(DeltaVerificationError, match="operation 3 "):
        verify_delta(io.BytesIO(_forge(read_header(io.BytesIO(delta)), ops)), io.BytesIO(OLD))
