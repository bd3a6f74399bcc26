"""Resuming an install: the offset journal, and every mismatch starting again from byte 0.

A real :class:`SlotManager` on a virtual node (slot files, the real env tool)
installs from local files and pipes; an install is stopped by its cancel
event once its first block is durable, which leaves what a SIGKILL leaves
plus a settled ``failed`` record. Checkpoints normally wait a second between
fsyncs; here they come after every block so no test depends on timing.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from redstone_agent.journal import Journal
from redstone_agent.slots import InstallFailed, NodeState, SlotManager
from redstone_agent.slots import writer as slot_writer
from redstone_agent.slots.manager import _resume_point
from redstone_agent.slots.virtual import VirtualNode
from tests.support import require_tool

BLOCK = 4 << 20
"""The slot writer's block: checkpoints fall on multiples of it."""
IMAGE = os.urandom(BLOCK + (2 << 20) + 12345)
SHA = hashlib.sha256(IMAGE).hexdigest()


@pytest.fixture(autouse=True)
def checkpoint_every_block(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(slot_writer, "CHECKPOINT_SECONDS", 0.0)


@pytest.fixture
def node(tmp_path: Path) -> VirtualNode:
    require_tool("fw_setenv")
    return VirtualNode.create(tmp_path / "node", slot_size=8 << 20)


@pytest.fixture
def manager(node: VirtualNode) -> SlotManager:
    return SlotManager(node.config)


def write_file(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def interrupted_install(manager: SlotManager, tmp_path: Path, data: bytes = IMAGE) -> None:
    """Install IMAGE from a pipe carrying ``data`` that stalls after a little more than
    one block, and cancel it once that block is in the slot.

    The cancel is noticed only after the writing thread finished the block it
    was on, checkpoint included, so a plain image always leaves one.
    """
    fifo = tmp_path / "stalling.fifo"
    os.mkfifo(fifo)
    cancel = threading.Event()
    slot = manager.config.B.device

    def first_block_written() -> bool:
        with slot.open("rb") as handle:
            return handle.read(BLOCK) == IMAGE[:BLOCK]

    def feed() -> None:
        stall = BLOCK + (1 << 20)
        with fifo.open("wb") as out:
            out.write(data[:stall])
            out.flush()
            while not first_block_written():
                time.sleep(0.01)
            cancel.set()
            out.write(data[stall : stall + 65536])  # wakes the reader: it sees cancel

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    with pytest.raises(InstallFailed, match="cancelled"):
        manager.install(str(fifo), sha256=SHA, size=len(IMAGE), cancel=cancel)
    feeder.join()
    fifo.unlink()


def record(manager: SlotManager) -> dict[str, Any]:
    return manager.journal.load() or {}


def install(manager: SlotManager, source: str) -> list[int]:
    """A complete install of IMAGE; returns the progress reports."""
    reports: list[int] = []
    status = manager.install(
        source, sha256=SHA, size=len(IMAGE), progress=lambda done, _t: reports.append(done)
    )
    assert status.state is NodeState.INSTALLED
    return reports


def test_the_durable_offset_is_journaled_and_the_next_install_continues_there(
    manager: SlotManager, node: VirtualNode, tmp_path: Path
) -> None:
    source = write_file(tmp_path / "rootfs.img", IMAGE)
    interrupted_install(manager, tmp_path)
    kept = record(manager)
    assert kept["phase"] == "failed"
    assert kept["resume"] == {
        "offset": BLOCK,
        "validator": None,
        "sha256": SHA,
        "size": len(IMAGE),
        "device": str(node.config.B.device),
    }
    assert manager.resume_offset(SHA, len(IMAGE)) == BLOCK
    reports = install(manager, source)
    assert reports[0] == BLOCK  # re-hashed, not re-read from the source
    assert node.config.B.device.read_bytes()[: len(IMAGE)] == IMAGE
    assert "resume" not in record(manager)
    assert manager.resume_offset(SHA, len(IMAGE)) == 0


def test_a_killed_install_keeps_its_offset_when_the_record_is_settled(
    manager: SlotManager, node: VirtualNode, tmp_path: Path
) -> None:
    """What SIGKILL leaves: a ``writing`` record with a resume point (see test_resume.py
    under tests/integration/slots for the real process)."""
    source = write_file(tmp_path / "rootfs.img", IMAGE)
    interrupted_install(manager, tmp_path)
    journal = Journal(node.config.state_dir / "slots.json")
    failed = journal.load()
    assert failed is not None
    journal.save(
        {"phase": "writing", "slot": "B", "from": "A", "sha256": SHA, "size": len(IMAGE),
         "source": source, "started": "x", "resume": failed["resume"]}
    )  # fmt: skip
    assert manager.resume_offset(SHA, len(IMAGE)) == BLOCK  # before settling, too
    status = manager.status()
    assert status.state is NodeState.IDLE
    assert status.last_error is not None
    assert status.last_error.endswith(f"its first {BLOCK} bytes are kept for a resume")
    assert record(manager)["resume"] == failed["resume"]
    assert install(manager, source)[0] == BLOCK


def test_a_resumed_image_that_does_not_verify_is_written_again_from_byte_0(
    manager: SlotManager, node: VirtualNode, tmp_path: Path
) -> None:
    source = write_file(tmp_path / "rootfs.img", IMAGE)
    interrupted_install(manager, tmp_path)
    with node.config.B.device.open("r+b") as slot:  # the kept prefix went bad meanwhile
        slot.seek(100)
        slot.write(b"\x00" if IMAGE[100] else b"\x01")
    reports = install(manager, source)
    assert reports[0] == BLOCK
    assert any(done < BLOCK for done in reports[1:])  # then again from the start
    assert node.config.B.device.read_bytes()[: len(IMAGE)] == IMAGE


def test_a_source_that_cannot_seek_starts_from_byte_0(
    manager: SlotManager, node: VirtualNode, tmp_path: Path
) -> None:
    interrupted_install(manager, tmp_path)
    fifo = tmp_path / "rootfs.fifo"
    os.mkfifo(fifo)

    def feed() -> None:
        with fifo.open("wb") as out:
            out.write(IMAGE)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    reports = install(manager, str(fifo))
    writer.join()
    assert reports[0] < BLOCK
    assert node.config.B.device.read_bytes()[: len(IMAGE)] == IMAGE


def test_a_compressed_image_journals_no_offset(manager: SlotManager, tmp_path: Path) -> None:
    """A decoder's state cannot be saved: compressed images and deltas start from 0."""
    interrupted_install(manager, tmp_path, lzma.compress(IMAGE, preset=0))
    assert "resume" not in record(manager)
    assert manager.resume_offset(SHA, len(IMAGE)) == 0


def test_a_failed_write_or_a_bad_image_keeps_no_offset(
    manager: SlotManager, tmp_path: Path
) -> None:
    """Only a failing source leaves the slot's prefix trustworthy for a retry."""
    wrong = IMAGE[:BLOCK] + bytes(len(IMAGE) - BLOCK)
    source = write_file(tmp_path / "rootfs.img", wrong)
    with pytest.raises(InstallFailed, match="SHA-256"):
        manager.install(source, sha256=SHA, size=len(IMAGE))
    assert record(manager)["phase"] == "failed"
    assert "resume" not in record(manager)


KEPT = {"offset": BLOCK, "validator": '"v1"', "sha256": SHA, "size": len(IMAGE), "device": "/d/B"}


@pytest.mark.parametrize(
    ("change", "resumes"),
    [
        ({}, True),
        ({"phase": "writing"}, True),
        ({"sha256": "0" * 64}, False),  # another image
        ({"size": len(IMAGE) + 1}, False),  # another length
        ({"slot": "A"}, False),  # the other slot
        ({"device": "/d/other"}, False),  # the slot moved
        ({"phase": "installed"}, False),
        ({"offset": BLOCK + 1}, False),  # not a checkpoint
        ({"offset": len(IMAGE) + 4096 - len(IMAGE) % 4096}, False),  # past the end
        ({"offset": "4194304"}, False),  # malformed
        ({"validator": 7}, False),
    ],
)
def test_only_the_same_image_into_the_same_slot_resumes(
    change: dict[str, object], resumes: bool
) -> None:
    resume = {**KEPT, **{k: v for k, v in change.items() if k in KEPT}}
    journal = {"phase": "failed", "slot": "B", "resume": resume}
    journal.update({k: v for k, v in change.items() if k in ("phase", "slot")})
    point = _resume_point(journal, "B", Path("/d/B"), SHA, len(IMAGE))
    assert (point is not None) is resumes
    if point is not None:
        assert (point.offset, point.validator) == (BLOCK, '"v1"')


def test_an_unknown_size_never_resumes() -> None:
    journal = {"phase": "failed", "slot": "B", "resume": {**KEPT, "size": None}}
    assert _resume_point(journal, "B", Path("/d/B"), SHA, None) is None
