"""The install transaction end to end on file slots with the real env tools."""

from __future__ import annotations

import lzma
import threading
from pathlib import Path

import pytest
import zstandard

from redstone_agent.slots import InstallFailed, InstallRefused, NodeState, SlotManager
from redstone_agent.slots.virtual import VirtualNode
from tests.integration.slots.conftest import Image, slot_sha256


def test_install_reboot_commit(node: VirtualNode, manager: SlotManager, image: Image) -> None:
    seen: list[tuple[int, int | None]] = []
    status = manager.install(
        str(image.path),
        sha256=image.sha256,
        size=image.size,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert status.state is NodeState.INSTALLED
    assert (status.booted, status.primary) == ("A", "B")
    assert status.install is not None and status.install["sha256"] == image.sha256
    assert seen and seen[-1][0] == image.size
    assert slot_sha256(node.config.B.device, image.size) == image.sha256

    assert node.reboot() == "B"
    assert manager.status().state is NodeState.TRYING
    status = manager.mark_good()
    assert status.state is NodeState.IDLE
    assert [s.committed for s in status.slots] == [True, True]
    assert node.reboot() == "B" and node.reboot() == "B"  # committed: no tries spent
    assert manager.status().state is NodeState.IDLE


def test_trial_that_never_commits_rolls_back(
    node: VirtualNode, manager: SlotManager, image: Image
) -> None:
    manager.install(str(image.path), sha256=image.sha256)
    booted = [node.reboot() for _ in range(node.config.tries + 1)]
    assert booted == ["B"] * node.config.tries + ["A"]
    status = manager.status()
    assert status.state is NodeState.ROLLED_BACK
    assert status.rollback is not None
    assert "slot B failed its trial boot (3 tries spent)" in status.rollback["reason"]
    assert status.primary == "A"
    # The report survives until acknowledged, across reboots.
    assert node.reboot() == "A"
    assert SlotManager(node.config).status().state is NodeState.ROLLED_BACK
    assert manager.acknowledge().state is NodeState.IDLE
    assert manager.status().rollback is None


def test_health_check_failure_marks_bad_and_reverts(
    node: VirtualNode, manager: SlotManager, image: Image
) -> None:
    manager.install(str(image.path), sha256=image.sha256)
    assert node.reboot() == "B"
    status = manager.mark_bad("health check failed: app.service inactive")
    assert status.state is NodeState.REVERTING
    assert node.reboot() == "A"
    status = manager.status()
    assert status.state is NodeState.ROLLED_BACK
    assert status.rollback is not None
    assert "health check failed: app.service inactive" in status.rollback["reason"]


def test_install_during_a_trial_is_refused(
    node: VirtualNode, manager: SlotManager, image: Image
) -> None:
    manager.install(str(image.path), sha256=image.sha256)
    node.reboot()
    with pytest.raises(InstallRefused, match="slot B is on trial: mark-good or mark-bad"):
        manager.install(str(image.path), sha256=image.sha256)


def test_mark_bad_refused_without_a_committed_fallback(manager: SlotManager) -> None:
    with pytest.raises(InstallRefused, match="slot B is not committed"):
        manager.mark_bad()


def test_mark_good_on_a_committed_slot_is_a_noop(manager: SlotManager) -> None:
    status = manager.mark_good()
    assert status.state is NodeState.IDLE
    assert status.notes == ["slot A is already committed"]


def test_reinstall_while_reboot_pending_replaces_the_pending_image(
    node: VirtualNode, manager: SlotManager, image: Image, tmp_path: Path
) -> None:
    manager.install(str(image.path), sha256=image.sha256)
    from tests.integration.slots.conftest import make_image

    newer = make_image(tmp_path / "rootfs-3.img", 2**20, seed=7)
    status = manager.install(str(newer.path), sha256=newer.sha256)
    assert status.state is NodeState.INSTALLED
    assert node.reboot() == "B"
    assert slot_sha256(node.config.B.device, newer.size) == newer.sha256


@pytest.mark.parametrize("codec", ["xz", "zstd"])
def test_compressed_sources_stream_into_the_slot(
    node: VirtualNode, manager: SlotManager, image: Image, codec: str
) -> None:
    raw = image.path.read_bytes()
    packed = image.path.with_suffix(f".img.{codec}")
    packed.write_bytes(
        lzma.compress(raw) if codec == "xz" else zstandard.ZstdCompressor().compress(raw)
    )
    status = manager.install(str(packed), sha256=image.sha256, size=image.size)
    assert status.state is NodeState.INSTALLED
    assert slot_sha256(node.config.B.device, image.size) == image.sha256


def test_cancel_leaves_the_running_slot_primary(manager: SlotManager, image: Image) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(InstallFailed, match="cancel"):
        manager.install(str(image.path), sha256=image.sha256, cancel=cancel)
    assert manager.status().primary == "A"


def test_switch_back_and_forth(node: VirtualNode, manager: SlotManager, image: Image) -> None:
    for expected in ("B", "A", "B"):
        manager.install(str(image.path), sha256=image.sha256)
        assert node.reboot() == expected
        assert manager.mark_good().state is NodeState.IDLE


def test_discard_unprimes_an_installed_slot(
    node: VirtualNode, manager: SlotManager, image: Image
) -> None:
    manager.install(str(image.path), sha256=image.sha256)
    status = manager.discard()
    assert status.state is NodeState.IDLE and status.primary == "A"
    assert node.reboot() == "A"
    assert manager.discard().notes == ["no installed update to discard"]
