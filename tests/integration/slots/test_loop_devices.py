"""Real block devices: install onto a loop device; refuse mounted or read-only ones."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from redstone_agent.slots import InstallFailed, NodeState, SlotConfig, SlotManager, UnsafeTarget
from redstone_agent.slots.virtual import VirtualNode
from tests.integration.slots.conftest import Image, slot_sha256
from tests.support import require_tool

pytestmark = pytest.mark.root

LoopFactory = Callable[..., Path]


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[LoopFactory]:
    require_tool("losetup")
    attached: list[str] = []

    def attach(name: str, size: int = 8 << 20, *, read_only: bool = False) -> Path:
        backing = tmp_path / f"{name}.bin"
        with backing.open("wb") as handle:
            handle.truncate(size)
        flags = ["-r"] if read_only else []
        result = subprocess.run(
            ["losetup", "-f", "--show", *flags, str(backing)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            pytest.skip(f"losetup unavailable here: {result.stderr.strip()}")
        attached.append(result.stdout.strip())
        return Path(attached[-1])

    yield attach
    for device in attached:
        subprocess.run(["losetup", "-d", device], check=False)


def on_loop(node: VirtualNode, device_b: Path) -> SlotManager:
    return SlotManager(replace(node.config, B=SlotConfig(device_b)))


def test_install_onto_a_loop_device(
    node: VirtualNode, image: Image, loop_device: LoopFactory
) -> None:
    device = loop_device("slot-b")
    status = on_loop(node, device).install(str(image.path), sha256=image.sha256)
    assert status.state is NodeState.INSTALLED
    assert slot_sha256(device, image.size) == image.sha256


def test_read_only_device_fails_cleanly(
    node: VirtualNode, image: Image, loop_device: LoopFactory
) -> None:
    device = loop_device("slot-b-ro", read_only=True)
    with pytest.raises(InstallFailed, match="slot A stays active"):
        on_loop(node, device).install(str(image.path), sha256=image.sha256)
    assert node.reboot() == "A"


def test_mounted_device_is_refused(
    node: VirtualNode, image: Image, loop_device: LoopFactory, tmp_path: Path
) -> None:
    require_tool("mkfs.ext4")
    device = loop_device("slot-b-mounted")
    subprocess.run(["mkfs.ext4", "-q", str(device)], check=True)
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    if subprocess.run(["mount", str(device), str(mountpoint)], check=False).returncode != 0:
        pytest.skip("mount is not permitted here")
    try:
        with pytest.raises(UnsafeTarget, match="is mounted"):
            on_loop(node, device).install(str(image.path), sha256=image.sha256)
    finally:
        subprocess.run(["umount", str(mountpoint)], check=False)
    assert node.bootenv.load_state().slots["B"].ok is False


def test_file_slot_mounted_through_a_loop_device_is_refused(
    node: VirtualNode, image: Image, tmp_path: Path
) -> None:
    require_tool("mkfs.ext4")
    slot_b = node.config.B.device
    subprocess.run(["mkfs.ext4", "-q", "-F", str(slot_b)], check=True)
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    mount = ["mount", "-o", "loop", str(slot_b), str(mountpoint)]
    if subprocess.run(mount, check=False).returncode != 0:
        pytest.skip("mount is not permitted here")
    try:
        with pytest.raises(UnsafeTarget, match="mounted through a loop device"):
            SlotManager(node.config).install(str(image.path), sha256=image.sha256)
    finally:
        subprocess.run(["umount", "-d", str(mountpoint)], check=False)
