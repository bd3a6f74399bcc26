"""The vehicle board as tests use it: the cached disk, per-test copies, factory data, boots.

The disk is the shared U-Boot flow (board script, ``etc/u-boot/boot.cmd``,
``qemu-x86.env``) on the :data:`~tools.qemu.layout.VEHICLE` layout, slot A
holding the factory image (``vimage``). The env partition is handled by the
test board's :class:`~tools.qemu.board.Board` (same partition, same agent
code); this module adds the data partition and powering on with a channel.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from tools.qemu.board import Board
from tools.qemu.disk import build_disk_template, write_into
from tools.qemu.initramfs import build_initramfs
from tools.qemu.kernel import fetch_kernel
from tools.qemu.layout import VEHICLE
from tools.qemu.run import run
from tools.qemu.vehicle.guest import Guest
from tools.qemu.vehicle.image import IMAGE, build_image

DATA_LABEL = "data"


def vehicle_disk_template() -> Path:
    """The cached, unprovisioned vehicle disk (building every layer on first use)."""
    kernel = fetch_kernel()
    initrd = build_initramfs(kernel)
    image = build_image()
    return build_disk_template(kernel, initrd, VEHICLE, image / IMAGE)


def write_data_partition(board: Board, tree: Path) -> None:
    """Make p7 (``/var/lib/redstone`` in the guest) an ext4 holding ``tree`` (owners kept)."""
    assert VEHICLE.data is not None
    with tempfile.TemporaryDirectory(prefix="redstone-data-", dir=board.workdir) as tmp:
        image = Path(tmp) / "data.ext4"
        with image.open("wb") as handle:
            handle.truncate(VEHICLE.data.size)
        run(["mkfs.ext4", "-q", "-F", "-L", DATA_LABEL, "-d", tree, image])
        write_into(board.disk, VEHICLE.data, image)


def make_stick(path: Path, tree: Path, size_mib: int) -> Path:
    """A "USB stick": an ext4 image of ``tree`` (label ``stick``) to attach as a disk."""
    with path.open("wb") as handle:
        handle.truncate(size_mib << 20)
    run(["mkfs.ext4", "-q", "-F", "-L", "stick", "-d", tree, path])
    return path


def power_on(board: Board, sticks: tuple[Path, ...] = ()) -> Guest:
    """Start one power cycle of ``board``; its console is ``boot-N.log`` in the workdir."""
    board.boots += 1
    return Guest.start(board.disk, board.workdir / f"boot-{board.boots}.log", sticks)


def own(path: Path, uid: int, gid: int) -> None:
    """chown -R (the data partition keeps host owners: give them the guest's ids)."""
    os.chown(path, uid, gid)
    for item in path.rglob("*"):
        os.chown(item, uid, gid, follow_symlinks=False)


__all__ = ["Board", "make_stick", "own", "power_on", "vehicle_disk_template"]
