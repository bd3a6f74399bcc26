"""The GPT disk of the QEMU x86 test board, in 512-byte sectors.

The env partition's LBA and size are also written, as literals, in
``etc/u-boot/qemu-x86.env`` and ``tools/qemu/board-boot.cmd`` (U-Boot has no
arithmetic here); ``tests/system/test_board_files.py`` keeps them in step.
"""

from __future__ import annotations

from dataclasses import dataclass

SECTOR = 512
ENV_SIZE = 0x4000
"""Bytes of the env block (one copy: the board script cannot write a redundant env)."""


@dataclass(frozen=True)
class Partition:
    """One GPT partition: number, GPT name, first sector and length in sectors."""

    number: int
    name: str
    start: int
    sectors: int

    @property
    def offset(self) -> int:
        """Byte offset in the disk image."""
        return self.start * SECTOR

    @property
    def size(self) -> int:
        """Length in bytes."""
        return self.sectors * SECTOR

    @property
    def guest_device(self) -> str:
        """The Linux device node inside the guest (one virtio disk)."""
        return f"/dev/vda{self.number}"


BOOT = Partition(1, "boot", 2048, 49152)  # 24 MiB FAT: vmlinuz, initrd.img, scripts
SLOT_A = Partition(2, "rootA", 51200, 16384)  # 8 MiB
SLOT_B = Partition(3, "rootB", 67584, 16384)  # 8 MiB
ENV = Partition(4, "env", 83968, 2048)  # 1 MiB, env block at its start
PARTITIONS = (BOOT, SLOT_A, SLOT_B, ENV)
SLOTS = {"A": SLOT_A, "B": SLOT_B}
DISK_SECTORS = ENV.start + ENV.sectors + 2048  # room for the backup GPT
ENV_SECTORS = ENV_SIZE // SECTOR


def sfdisk_script() -> str:
    """Input for ``sfdisk`` that creates exactly this layout."""
    lines = ["label: gpt", "first-lba: 2048"]
    for part in PARTITIONS:
        kind = "uefi" if part is BOOT else "linux"
        lines.append(f"start={part.start}, size={part.sectors}, type={kind}, name={part.name}")
    return "\n".join(lines) + "\n"
