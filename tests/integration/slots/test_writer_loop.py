"""SlotWriter on real block devices (loop devices over temporary files)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from redstone_agent.slots.writer import (
    ReadbackMismatch,
    SlotWriteError,
    read_back,
    write_image,
)
from tests.support import require_tool

pytestmark = pytest.mark.root

DEVICE_SIZE = 8 << 20
CHUNK = 1 << 20


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A loop device over a file of DEVICE_SIZE bytes filled with 0xEE; always detached."""
    losetup = require_tool("losetup")
    backing = tmp_path / f"slot-{os.getpid()}.img"
    backing.write_bytes(b"\xee" * DEVICE_SIZE)
    device = subprocess.run(
        [losetup, "-f", "--show", str(backing)], check=True, capture_output=True, text=True
    ).stdout.strip()
    try:
        yield Path(device), backing
    finally:
        subprocess.run([losetup, "-d", device], check=True)


def test_writes_verifies_and_keeps_the_rest_of_the_device(loop: tuple[Path, Path]) -> None:
    device, backing = loop
    image = os.urandom(5 * CHUNK + 4096 + 100)
    result = write_image(
        [image[i : i + 300_000] for i in range(0, len(image), 300_000)], device,
        expected_size=len(image), expected_sha256=hashlib.sha256(image).hexdigest(),
        verify_readback=True, chunk_size=CHUNK,
    )  # fmt: skip
    assert result.size == len(image)
    data = backing.read_bytes()
    assert len(data) == DEVICE_SIZE
    assert data[: len(image)] == image
    assert data[len(image) :] == b"\xee" * (DEVICE_SIZE - len(image))


def test_image_larger_than_the_device_is_refused_up_front(loop: tuple[Path, Path]) -> None:
    device, backing = loop
    with pytest.raises(SlotWriteError, match=f"holds {DEVICE_SIZE} bytes, the image needs"):
        write_image([b"x"], device, expected_size=DEVICE_SIZE + 1, expected_sha256="0" * 64)
    assert backing.read_bytes() == b"\xee" * DEVICE_SIZE


def test_running_off_the_end_of_the_device_is_a_clear_error(loop: tuple[Path, Path]) -> None:
    device, _ = loop
    chunks = (bytes(CHUNK) for _ in range(DEVICE_SIZE // CHUNK + 2))
    with pytest.raises(SlotWriteError, match=f"writing {device} at byte {DEVICE_SIZE} failed"):
        write_image(chunks, device, expected_size=None, expected_sha256="0" * 64, chunk_size=CHUNK)


def test_read_back_sees_storage_that_does_not_hold_the_data(loop: tuple[Path, Path]) -> None:
    device, backing = loop
    image = os.urandom(2 * CHUNK)
    digest = hashlib.sha256(image).hexdigest()
    write_image([image], device, expected_size=len(image), expected_sha256=digest)
    with backing.open("r+b") as behind:  # the medium changes under the device
        behind.seek(CHUNK)
        behind.write(b"\x00" * 512)
        behind.flush()
        os.fsync(behind.fileno())
    fd = os.open(device, os.O_RDONLY)
    try:
        with pytest.raises(ReadbackMismatch, match="reads back SHA-256"):
            read_back(device, fd, len(image), digest, CHUNK)
    finally:
        os.close(fd)
