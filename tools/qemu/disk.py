"""A board's GPT disk: boot partition, two rootfs slots, raw env and boot-script partitions.

Built without root: ``sfdisk`` on a file, ``mkfs.vfat -C`` plus ``mcopy`` for
the FAT boot partition, ``mkfs.ext4 -d`` for slot A (and the vehicle board's
data partition), and plain writes at the partition offsets. The compiled
product script (``redstone.scr``, the same bytes as on the FAT) goes raw into
both ``scriptA`` and ``scriptB`` (issue 12: the board script loads it from
there). The template (slot A holding the factory image, slot B and the env
empty) is cached per layout; each test works on its own sparse copy.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from tools.qemu.cache import cached, input_key
from tools.qemu.errors import HarnessError
from tools.qemu.kernel import Kernel
from tools.qemu.layout import BOOT, SCRIPT_A, SCRIPT_B, SECTOR, TEST, Layout, Partition
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


def write_into(disk: Path, part: Partition, image: Path, *, sparse: bool = False) -> None:
    """Copy ``image`` to the start of ``part`` in ``disk``; refuse one that does not fit.

    ``sparse``: skip all-zero chunks (only where the partition is known blank, e.g. a
    fresh template), so holes stay holes.
    """
    size = image.stat().st_size
    if size > part.size:
        raise HarnessError(f"{image} ({size} bytes) does not fit partition {part.name}")
    fd = os.open(disk, os.O_WRONLY)
    try:
        with image.open("rb") as source:
            offset = part.offset
            while chunk := source.read(COPY_CHUNK):
                if not sparse or chunk.count(0) != len(chunk):
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


def build_disk_template(
    kernel: Kernel,
    initrd: Path,
    layout: Layout = TEST,
    slot_a_image: Path | None = None,
) -> Path:
    """The cached, unprovisioned disk of ``layout``: slot A = ``slot_a_image`` (default
    the tiny healthy version 1), slot B and the env blank, the script in p5 and p6."""
    key = input_key(
        [
            kernel.directory.name,
            initrd.parent.name,
            BOOT_CMD,
            BOARD_BOOT_CMD,
            BOARD_ENV,
            layout.sfdisk_script(),
            str(slot_a_image.parent.name if slot_a_image else "tiny"),
            Path(__file__).resolve(),
            HERE / "rootfs.py",
        ]
    )

    def build(out: Path) -> None:
        disk = out / FILE_NAME
        with disk.open("wb") as handle:
            handle.truncate(layout.disk_sectors * SECTOR)
        run_bytes(
            ["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", disk],
            stdin=layout.sfdisk_script().encode(),
        )
        write_into(disk, BOOT, _boot_partition(out, kernel, initrd))
        for copy in (SCRIPT_A, SCRIPT_B):
            write_into(disk, copy, out / "redstone.scr")
        if slot_a_image is None:
            write_into(disk, layout.slot_a, build_rootfs(out / "rootA.ext4", "1", Health.OK))
            (out / "rootA.ext4").unlink()
        else:
            write_into(disk, layout.slot_a, slot_a_image, sparse=True)
        if layout.data is not None:
            data = out / "data.ext4"
            with data.open("wb") as handle:
                handle.truncate(layout.data.size)
            run(["mkfs.ext4", "-q", "-F", "-L", "data", data])
            write_into(disk, layout.data, data, sparse=True)
            data.unlink()
        for scratch in ("boot.vfat", "boot.scr", "redstone.scr"):
            (out / scratch).unlink()

    # One cache kind per board ("disk" for the test board, "vdisk" for the vehicle).
    kind = "disk" if layout is TEST else f"{layout.name[0]}disk"
    return cached(kind, key, build) / FILE_NAME


def copy_disk(template: Path, directory: Path) -> Path:
    """A private copy of the template for one test."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / FILE_NAME
    with tempfile.NamedTemporaryFile(dir=directory, delete=False) as tmp:
        staging = Path(tmp.name)
    run(["cp", "--sparse=always", template, staging])
    staging.rename(target)
    return target
