"""SlotWriter on regular files: verified writes, every refusal, no false success."""

from __future__ import annotations

import hashlib
import io
import mmap
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from redstone_agent.slots.writer import (
    BlockSink,
    ImageMismatch,
    ReadbackMismatch,
    SlotWriteError,
    SlotWriter,
    WriteCancelled,
    read_back,
    write_image,
)
from redstone_agent.transfer import TransferCancelled

CHUNK = 64 << 10
IMAGE = os.urandom(5 * CHUNK + 1234)
SHA = hashlib.sha256(IMAGE).hexdigest()


def pieces(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize("piece", [1000, CHUNK, 3 * CHUNK + 17, len(IMAGE)])
def test_writes_and_verifies_whatever_the_input_chunking(tmp_path: Path, piece: int) -> None:
    target = tmp_path / "slot"
    result = write_image(
        pieces(IMAGE, piece), target, expected_size=len(IMAGE), expected_sha256=SHA,
        chunk_size=CHUNK, verify_readback=True,
    )  # fmt: skip
    assert (result.size, result.sha256) == (len(IMAGE), SHA)
    assert result.seconds >= 0
    assert target.read_bytes() == IMAGE


def test_accepts_memoryview_and_uppercase_hash_without_size(tmp_path: Path) -> None:
    target = tmp_path / "slot"
    with SlotWriter(target, expected_size=None, expected_sha256=SHA.upper(), chunk_size=CHUNK) as w:
        w.write(memoryview(IMAGE))
        assert w.finish().sha256 == SHA


def test_never_truncates_an_existing_larger_target(tmp_path: Path) -> None:
    target = tmp_path / "slot"
    target.write_bytes(b"\xee" * (len(IMAGE) + 5000))
    write_image([IMAGE], target, expected_size=len(IMAGE), expected_sha256=SHA, chunk_size=CHUNK)
    data = target.read_bytes()
    assert data[: len(IMAGE)] == IMAGE
    assert data[len(IMAGE) :] == b"\xee" * 5000


def test_progress_rises_to_the_full_size(tmp_path: Path) -> None:
    seen: list[tuple[int, int | None]] = []
    write_image(
        pieces(IMAGE, 1000), tmp_path / "slot", expected_size=len(IMAGE), expected_sha256=SHA,
        chunk_size=CHUNK, progress=lambda done, total: seen.append((done, total)),
    )  # fmt: skip
    done = [d for d, _ in seen]
    assert done == sorted(done)
    assert seen[-1] == (len(IMAGE), len(IMAGE))


def test_wrong_hash_names_expected_and_actual(tmp_path: Path) -> None:
    wrong = "0" * 64
    with pytest.raises(ImageMismatch, match=f"SHA-256 {SHA}, expected {wrong}"):
        write_image([IMAGE], tmp_path / "slot", expected_size=len(IMAGE), expected_sha256=wrong)


def test_short_image_is_a_mismatch(tmp_path: Path) -> None:
    with pytest.raises(ImageMismatch, match=f"ended after 1000 bytes, expected {len(IMAGE)}"):
        write_image(
            [IMAGE[:1000]], tmp_path / "slot", expected_size=len(IMAGE), expected_sha256=SHA
        )


def test_longer_image_is_refused_before_writing_past_the_size(tmp_path: Path) -> None:
    target = tmp_path / "slot"
    size = 2 * CHUNK
    with pytest.raises(ImageMismatch, match=f"longer than the expected {size} bytes"):
        write_image(
            pieces(IMAGE, 1000), target, expected_size=size, expected_sha256=SHA, chunk_size=CHUNK
        )
    assert target.stat().st_size <= size


def test_cancel_raises_and_is_a_transfer_cancellation(tmp_path: Path) -> None:
    cancel = threading.Event()

    def chunks() -> Iterator[bytes]:
        yield IMAGE[:CHUNK]
        cancel.set()
        yield IMAGE[CHUNK:]

    with pytest.raises(WriteCancelled, match="cancelled after 65536 bytes") as caught:
        write_image(
            chunks(), tmp_path / "slot", expected_size=len(IMAGE), expected_sha256=SHA,
            cancel=cancel, chunk_size=CHUNK,
        )  # fmt: skip
    assert isinstance(caught.value, TransferCancelled)


def test_leaving_without_finish_claims_nothing_and_stops_workers(tmp_path: Path) -> None:
    threads_before = threading.active_count()
    with SlotWriter(
        tmp_path / "slot", expected_size=len(IMAGE), expected_sha256=SHA, chunk_size=CHUNK
    ) as writer:
        writer.write(IMAGE[: 3 * CHUNK])
    assert threading.active_count() == threads_before
    with pytest.raises(RuntimeError, match="abandoned"):
        writer.finish()


def test_write_after_finish_is_a_programming_error(tmp_path: Path) -> None:
    with SlotWriter(tmp_path / "slot", expected_size=None, expected_sha256=SHA) as writer:
        writer.write(IMAGE)
        writer.finish()
        with pytest.raises(RuntimeError, match="already finished"):
            writer.write(b"x")


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"expected_sha256": "abc"}, SlotWriteError, "64 hex digits"),
        ({"expected_size": -1}, SlotWriteError, "must not be negative"),
        ({"chunk_size": 1000}, ValueError, "multiple of 4096"),
        ({"depth": 1}, ValueError, "at least 2"),
    ],
)
def test_bad_arguments(
    tmp_path: Path, kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    arguments: dict[str, object] = {"expected_size": None, "expected_sha256": SHA, **kwargs}
    with pytest.raises(error, match=message):
        SlotWriter(tmp_path / "slot", **arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("dir", "cannot open .* for writing: Is a directory"),
        ("missing/slot", "cannot open .* for writing: No such file"),
        ("/dev/null", "neither a block device nor a regular file"),
    ],
)
def test_unsuitable_targets_are_refused(tmp_path: Path, target: str, message: str) -> None:
    (tmp_path / "dir").mkdir()
    path = tmp_path / target if not target.startswith("/") else Path(target)
    with pytest.raises(SlotWriteError, match=message):
        SlotWriter(path, expected_size=None, expected_sha256=SHA)


def test_read_back_catches_storage_that_changed(tmp_path: Path) -> None:
    target = tmp_path / "slot"
    target.write_bytes(IMAGE)
    fd = os.open(target, os.O_RDONLY)
    try:
        read_back(target, fd, len(IMAGE), SHA, CHUNK)
        with pytest.raises(ReadbackMismatch, match="reads back SHA-256"):
            read_back(target, fd, len(IMAGE), "f" * 64, CHUNK)
        with pytest.raises(ReadbackMismatch, match="ended 100 bytes short"):
            read_back(target, fd, len(IMAGE) + 100, SHA, CHUNK)
    finally:
        os.close(fd)


@pytest.mark.parametrize("expected_size", [len(IMAGE), None])
def test_write_from_a_reader_goes_straight_into_blocks(
    tmp_path: Path, expected_size: int | None
) -> None:
    target = tmp_path / "slot"
    with SlotWriter(
        target, expected_size=expected_size, expected_sha256=SHA, chunk_size=CHUNK
    ) as writer:
        assert writer.write_from(io.BytesIO(IMAGE)) == len(IMAGE)
        assert writer.finish().size == len(IMAGE)
    assert target.read_bytes() == IMAGE


def test_write_from_refuses_a_longer_source_without_writing_past_the_size(
    tmp_path: Path,
) -> None:
    target = tmp_path / "slot"
    with pytest.raises(ImageMismatch, match="longer than the expected"):
        write_image(
            io.BytesIO(IMAGE + b"!"), target, expected_size=len(IMAGE), expected_sha256=SHA,
            chunk_size=CHUNK,
        )  # fmt: skip
    assert target.stat().st_size <= len(IMAGE)


def test_write_from_a_short_source_is_a_mismatch(tmp_path: Path) -> None:
    with pytest.raises(ImageMismatch, match="ended after 1000 bytes"):
        write_image(
            io.BytesIO(IMAGE[:1000]), tmp_path / "slot", expected_size=len(IMAGE),
            expected_sha256=SHA,
        )  # fmt: skip


def test_write_from_honours_cancel(tmp_path: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(WriteCancelled):
        write_image(
            io.BytesIO(IMAGE), tmp_path / "slot", expected_size=len(IMAGE), expected_sha256=SHA,
            cancel=cancel,
        )  # fmt: skip


def test_block_sink_writes_buffered_when_o_direct_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "slot"
    target.write_bytes(b"")
    backing = mmap.mmap(-1, 3 * 4096)
    misaligned = memoryview(backing)[1 : 1 + 2 * 4096]  # O_DIRECT needs an aligned address
    misaligned[:] = IMAGE[: 2 * 4096]
    fd = os.open(target, os.O_WRONLY)
    sink = BlockSink(fd, target)
    try:
        assert sink.direct  # ext4/tmpfs accept O_DIRECT at open time
        sink.write(misaligned, 0)
        assert not sink.direct
        sink.write(memoryview(IMAGE)[2 * 4096 : 3 * 4096 + 5], 2 * 4096)
        sink.sync()
    finally:
        sink.close()
        os.close(fd)
    assert target.read_bytes() == IMAGE[: 3 * 4096 + 5]


def test_block_sink_buffered_by_choice(tmp_path: Path) -> None:
    target = tmp_path / "slot"
    target.write_bytes(b"")
    fd = os.open(target, os.O_WRONLY)
    sink = BlockSink(fd, target, direct=False, lag=1)
    try:
        for offset in range(0, len(IMAGE), CHUNK):
            sink.write(memoryview(IMAGE)[offset : offset + CHUNK], offset)
        sink.sync()
    finally:
        sink.close()
        os.close(fd)
    assert target.read_bytes() == IMAGE


def test_a_file_slot_never_grows_past_its_capacity(tmp_path: Path) -> None:
    """Known size or not, an image larger than the slot is refused and the file keeps its size."""
    target = tmp_path / "slot"
    capacity = len(IMAGE) - 1
    target.write_bytes(b"\xee" * capacity)
    with pytest.raises(SlotWriteError, match=f"needs {len(IMAGE)} bytes, slot .* holds {capacity}"):
        SlotWriter(target, expected_size=len(IMAGE), expected_sha256=SHA, capacity=capacity)
    assert target.read_bytes() == b"\xee" * capacity  # refused before writing
    for feed in ([IMAGE], io.BytesIO(IMAGE), pieces(IMAGE, 1000)):
        with (
            pytest.raises(SlotWriteError, match=f"larger than the slot's {capacity} bytes"),
            SlotWriter(
                target, expected_size=None, expected_sha256=SHA, chunk_size=CHUNK, capacity=capacity
            ) as writer,
        ):
            if isinstance(feed, io.BytesIO):
                writer.write_from(feed)
            else:
                for piece in feed:
                    writer.write(piece)
            writer.finish()
        assert target.stat().st_size == capacity


# -- checkpoints and resume ---------------------------------------------------------------


def write_with_checkpoints(target: Path, data: bytes, every: int) -> list[int]:
    durable: list[int] = []
    with SlotWriter(
        target, expected_size=len(data), expected_sha256=hashlib.sha256(data).hexdigest(),
        chunk_size=CHUNK, checkpoint=durable.append, checkpoint_bytes=every,
        checkpoint_seconds=0,
    ) as writer:  # fmt: skip
        writer.write(data)
        writer.finish()
    return durable


def test_checkpoints_are_aligned_durable_offsets_short_of_the_end(tmp_path: Path) -> None:
    assert write_with_checkpoints(tmp_path / "slot", IMAGE, CHUNK) == [
        CHUNK * k for k in (1, 2, 3, 4, 5)
    ]
    assert write_with_checkpoints(tmp_path / "slot2", IMAGE, 2 * CHUNK) == [2 * CHUNK, 4 * CHUNK]
    exact = IMAGE[: 3 * CHUNK]
    # The end is never a checkpoint: finish() syncs it and the slot layer journals the result.
    assert write_with_checkpoints(tmp_path / "slot3", exact, CHUNK) == [CHUNK, 2 * CHUNK]


def test_checkpoints_wait_for_their_interval(tmp_path: Path) -> None:
    durable: list[int] = []
    with SlotWriter(
        tmp_path / "slot", expected_size=len(IMAGE), expected_sha256=SHA, chunk_size=CHUNK,
        checkpoint=durable.append, checkpoint_bytes=CHUNK, checkpoint_seconds=3600,
    ) as writer:  # fmt: skip
        writer.write(IMAGE)
        writer.finish()
    assert durable == []


def test_resume_rehashes_the_slot_prefix_and_writes_only_the_rest(tmp_path: Path) -> None:
    target = tmp_path / "slot"
    offset = 2 * CHUNK
    target.write_bytes(IMAGE[:offset] + b"\xee" * 100)  # what an interrupted write left
    reports: list[int] = []
    with SlotWriter(
        target, expected_size=len(IMAGE), expected_sha256=SHA, chunk_size=CHUNK,
        progress=lambda done, _total: reports.append(done),
    ) as writer:  # fmt: skip
        writer.resume(offset)
        assert (writer.received, writer.durable) == (offset, offset)
        writer.write(IMAGE[offset:])
        assert writer.finish().sha256 == SHA
    assert target.read_bytes() == IMAGE
    assert reports[0] == offset


def test_a_resumed_prefix_that_is_not_the_image_fails_the_final_check(tmp_path: Path) -> None:
    target = tmp_path / "slot"
    offset = 2 * CHUNK
    target.write_bytes(IMAGE[:100] + b"\x00" + IMAGE[101:offset])
    with SlotWriter(target, expected_size=len(IMAGE), expected_sha256=SHA, chunk_size=CHUNK) as w:
        w.resume(offset)
        w.write(IMAGE[offset:])
        with pytest.raises(ImageMismatch, match="has SHA-256"):
            w.finish()


@pytest.mark.parametrize("offset", [0, 4095, len(IMAGE) - len(IMAGE) % 4096 + 4096])
def test_resume_refuses_what_no_checkpoint_reports(tmp_path: Path, offset: int) -> None:
    target = tmp_path / "slot"
    target.write_bytes(IMAGE)
    writer = SlotWriter(target, expected_size=len(IMAGE), expected_sha256=SHA, chunk_size=CHUNK)
    with writer, pytest.raises(SlotWriteError, match=f"cannot resume {target} at byte {offset}"):
        writer.resume(offset)


def test_resume_of_a_slot_shorter_than_the_offset_fails(tmp_path: Path) -> None:
    target = tmp_path / "slot"
    target.write_bytes(IMAGE[:CHUNK])
    writer = SlotWriter(target, expected_size=len(IMAGE), expected_sha256=SHA, chunk_size=CHUNK)
    with writer, pytest.raises(SlotWriteError, match=f"ended at byte {CHUNK} of {2 * CHUNK}"):
        writer.resume(2 * CHUNK)
