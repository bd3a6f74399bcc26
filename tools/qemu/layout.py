"""The GPT disks of the QEMU x86 boards, in 512-byte sectors: one :class:`Layout` per board.

Both boards share the firmware side: p1 boot (FAT), p4 env, p5/p6 the two raw
copies of the compiled product boot script (``scriptA``/``scriptB``, issue 12).
Their LBAs are also written, as literals, in ``etc/u-boot/qemu-x86.env``,
``tools/qemu/board-boot.cmd`` and ``etc/u-boot/fw_env.config.qemu`` (U-Boot has
no arithmetic here); ``tests/system/test_board_files.py`` keeps them in step.
The rootfs slots are p2/p3 on both boards (``root=/dev/vda2|3`` in the board
env); where they lie and how big they are is the board's choice.
"""

from __future__ import annotations

from dataclasses import dataclass

SECTOR = 512
ENV_SIZE = 0x4000
"""Bytes of the env block (one copy: the board script cannot write a redundant env)."""
MIB = 2048
"""Sectors per MiB."""


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
    def end(self) -> int:
        """First sector after the partition."""
        return self.start + self.sectors

    @property
    def guest_device(self) -> str:
        """The Linux device node inside the guest (one virtio disk)."""
        return f"/dev/vda{self.number}"


BOOT = Partition(1, "boot", 2048, 49152)  # 24 MiB FAT: vmlinuz, initrd.img, scripts
ENV = Partition(4, "env", 83968, 2048)  # 1 MiB, env block at its start
SCRIPT_A = Partition(5, "scriptA", 86016, 1024)  # 512 KiB raw: compiled boot.cmd
SCRIPT_B = Partition(6, "scriptB", 87040, 1024)  # 512 KiB raw: the same, redundant copy
FIRMWARE_END = SCRIPT_B.end
"""First sector free for a board's own partitions after the fixed ones."""


@dataclass(frozen=True)
class Layout:
    """One board's disk: the fixed partitions plus its slots and optional data partition."""

    name: str
    slot_a: Partition
    slot_b: Partition
    data: Partition | None = None

    @property
    def partitions(self) -> tuple[Partition, ...]:
        """Every partition, by number (p1 … p6 or p7)."""
        parts = [BOOT, self.slot_a, self.slot_b, ENV, SCRIPT_A, SCRIPT_B]
        if self.data is not None:
            parts.append(self.data)
        return tuple(parts)

    @property
    def slots(self) -> dict[str, Partition]:
        """Slot name -> partition."""
        return {"A": self.slot_a, "B": self.slot_b}

    @property
    def disk_sectors(self) -> int:
        """Whole disk: the last partition's end plus room for the backup GPT."""
        return max(part.end for part in self.partitions) + 2048

    def sfdisk_script(self) -> str:
        """Input for ``sfdisk`` that creates exactly this layout."""
        lines = ["label: gpt", "first-lba: 2048"]
        for part in self.partitions:
            kind = "uefi" if part is BOOT else "linux"
            lines.append(f"start={part.start}, size={part.sectors}, type={kind}, name={part.name}")
        return "\n".join(lines) + "\n"


TEST = Layout(
    "test",
    slot_a=Partition(2, "rootA", 51200, 16384),  # 8 MiB: the tiny test rootfs
    slot_b=Partition(3, "rootB", 67584, 16384),
)
"""The small test board of test_uboot_ab.py: slots between boot and env."""

VEHICLE_SLOT_SECTORS = 384 * MIB
VEHICLE = Layout(
    "vehicle",
    slot_a=Partition(2, "rootA", 90112, VEHICLE_SLOT_SECTORS),
    slot_b=Partition(3, "rootB", 90112 + VEHICLE_SLOT_SECTORS, VEHICLE_SLOT_SECTORS),
    data=Partition(7, "data", 90112 + 2 * VEHICLE_SLOT_SECTORS, 256 * MIB),
)
"""The vehicle board: Debian + systemd slots after the script partitions, p7 data
(ext4, /var/lib/redstone: journals, the Master's image cache, consent; survives slot
switches; big enough for one compressed rootfs image in the cache)."""

# The test board's names, as the harness and tests/system have always used them.
SLOT_A = TEST.slot_a
SLOT_B = TEST.slot_b
PARTITIONS = TEST.partitions
SLOTS = TEST.slots
DISK_SECTORS = TEST.disk_sectors
ENV_SECTORS = ENV_SIZE // SECTOR


def sfdisk_script() -> str:
    """The test board's ``sfdisk`` input."""
    return TEST.sfdisk_script()
