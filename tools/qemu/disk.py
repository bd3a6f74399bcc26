"""The test board's GPT disk: boot partition, two rootfs slots, raw env partition.

Built without root: ``sfdisk`` on a file, ``mkfs.vfat -C`` plus ``mcopy`` for
the FAT boot partition, ``mkfs.ext4 -d`` for slot A, and plain writes at the
partition offsets. The template (slot A holding version 1, slot B and the env
empty) is cached; each test works on its own copy.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from tools.qemu.cache import cached, input_key
from tools.qemu.errors import HarnessError
from tools.qemu.kernel import Kernel
from tools.qemu.layout import BOOT, DISK_SECTORS, SECTOR, SLOT_A, Partition, sfdisk_script
from tools.qemu.rootfs import Health, build_rootfs
from tools.qemu.run import run, run_bytes

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BOOT_CMD = REPO / "etc" / "u-boot" / "boot.cmd"
BOARD_ENV = REPO / "etc" / "u-boot" / "qemu-x86.env"
BOARD_BOOT_CMD = HERE / "board-boot.cmd"
FILE_NAME = "disk.img"
COPY_CHUNK = 1 << 20


def compile_script(source: Path, output: Path, name: str) -> None:
    """``mkimage`` a U-Boot script, as docs/boot.md prescribes."""
    run(["mkimage", "-A", "arm", "-T", "script", "-C", "none", "-n", name, "-d", source, output])


def write_into(disk: Path, part: Partition, image: Path) -> None:
    """Copy ``image`` to the start of ``part`` in ``disk``; refuse one that does not fit."""
    size = image.stat().st_size
    if size > part.size:
        raise HarnessError(f"{image} ({size} bytes) does not fit partition {part.name}")
    fd = os.open(disk, os.O_WRONLY)
    try:
        with image.open("rb") as source:
            offset = part.offset
            while chunk := source.read(COPY_CHUNK):
                os.pwrite(fd, chunk, offset)
                offset += len(chunk)
        os.fsync(fd)
    finally:
        os.close(fd)


def _boot_partition(out: Path, kernel: Kernel, initrd: Path) -> Path:
    fat = out / "boot.vfat"
    run(["mkfs.vfat", "-n", "BOOT", "-C", fat, str(BOOT.size // 1024)])
    compile_script(BOARD_BOOT_CMD, out / "boot.scr", "qemu-x86 board")
    compile_script(BOOT_CMD, out / "redstone.scr", "Redstone A/B")
    files = [
        (kernel.vmlinuz, "vmlinuz"),
        (initrd, "initrd.img"),
        (out / "boot.scr", "boot.scr"),
        (out / "redstone.scr", "redstone.scr"),
        (BOARD_ENV, "qemu-x86.env"),
    ]
    for source, name in files:
        run_bytes(["mcopy", "-o", "-i", fat, source, f"::{name}"])
    return fat


def build_disk_template(kernel: Kernel, initrd: Path) -> Path:
    """The cached, unprovisioned disk: slot A = version 1 (healthy), B and env blank."""
    key = input_key(
        [
            kernel.directory.name,
            initrd.parent.name,
            BOOT_CMD,
            BOARD_BOOT_CMD,
            BOARD_ENV,
            sfdisk_script(),
            Path(__file__).resolve(),
            HERE / "rootfs.py",
        ]
    )

    def build(out: Path) -> None:
        disk = out / FILE_NAME
        with disk.open("wb") as handle:
            handle.truncate(DISK_SECTORS * SECTOR)
        run_bytes(
            ["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", disk],
            stdin=sfdisk_script().encode(),
        )
        write_into(disk, BOOT, _boot_partition(out, kernel, initrd))
        write_into(disk, SLOT_A, build_rootfs(out / "rootA.ext4", "1", Health.OK))
        for scratch in ("boot.vfat", "boot.scr", "redstone.scr", "rootA.ext4"):
            (out / scratch).unlink()

    return cached("disk", key, build) / FILE_NAME


def copy_disk(template: Path, directory: Path) -> Path:
    """A private copy of the template for one test."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / FILE_NAME
    with tempfile.NamedTemporaryFile(dir=directory, delete=False) as tmp:
        staging = Path(tmp.name)
    shutil.copyfile(template, staging)
    staging.rename(target)
    return target
