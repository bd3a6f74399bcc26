"""The QEMU x86 test board as tests use it: build, provision, update, power-cycle.

The host side uses the agent's real code: :class:`UBootEnv` (``fw_setenv`` /
``fw_printenv`` on the disk image's env partition, through an ``fw_env.config``
naming the image file and the partition's offset) and :class:`BootState` for
every env change, exactly as the install transaction does on a vehicle.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tools.qemu.console import BootRecord
from tools.qemu.disk import BOARD_ENV, FILE_NAME, build_disk_template, copy_disk, write_into
from tools.qemu.errors import HarnessError
from tools.qemu.initramfs import build_initramfs
from tools.qemu.kernel import fetch_kernel
from tools.qemu.layout import ENV, ENV_SIZE, SLOT_A, SLOT_B, SLOTS
from tools.qemu.loops import partition_devices
from tools.qemu.machine import power_cycle
from tools.qemu.rootfs import Health, build_rootfs

from redstone_agent.slots.bootloader import UBootEnv
from redstone_agent.slots.config import BootloaderConfig, SlotConfig, SlotsConfig, UBootConfig
from redstone_agent.slots.manager import SlotManager
from redstone_agent.slots.scheme import BootState

log = logging.getLogger(__name__)
BOOT_TIMEOUT_S = 120.0
"""Per power cycle; a TCG boot takes ~10 s, the margin is for a loaded machine."""


def disk_template() -> Path:
    """The cached unprovisioned disk, building kernel, initramfs and disk on first use."""
    kernel = fetch_kernel()
    initrd = build_initramfs(kernel)
    return build_disk_template(kernel, initrd)


UBOOT_READY = "Hit any key to stop autoboot"
"""U-Boot printed this before it reads the disk: a reset earlier is the emulator's, not ours."""
EMULATOR_RESET_RETRIES = 2


@dataclass
class Board:
    """One test board: a private disk image and the files describing it under ``workdir``."""

    workdir: Path
    disk: Path
    boots: int = 0

    @classmethod
    def create(cls, workdir: Path, template: Path | None = None) -> Board:
        """A board with a fresh copy of the (cached) disk; the env is still blank."""
        disk = copy_disk(template or disk_template(), workdir)
        board = cls(workdir, disk)
        board.fw_env_config.write_text(f"{disk} {ENV.offset:#x} {ENV_SIZE:#x}\n")
        return board

    @classmethod
    def open(cls, workdir: Path) -> Board:
        """The board :meth:`create` made in ``workdir``; boot logs continue their numbering."""
        disk = workdir / FILE_NAME
        if not disk.is_file():
            raise HarnessError(f"{workdir} holds no board (no disk.img)")
        return cls(workdir, disk, boots=len(list(workdir.glob("boot-*.log"))))

    @property
    def fw_env_config(self) -> Path:
        """The host's libubootenv config for this disk's env partition."""
        return self.workdir / "fw_env.config"

    @property
    def bootenv(self) -> UBootEnv:
        """The agent's U-Boot env backend, pointed at this disk."""
        return UBootEnv(UBootConfig(fw_env_config=self.fw_env_config, defaults=BOARD_ENV))

    def provision(self, booted: str = "A") -> None:
        """What the factory does (``redstone-sub init-bootenv``): board defaults + scheme."""
        self.bootenv.initialise(BootState.factory(booted).to_env())

    def state(self) -> BootState:
        """The A/B scheme as stored in the env partition."""
        return self.bootenv.load_state()

    def install(self, slot: str, version: str, health: Health, tries: int) -> None:
        """The agent's install transaction from the host: mark bad, write, try with N tries."""
        env = self.bootenv
        env.save_state(env.load_state().mark_bad(slot))
        image = build_rootfs(self.workdir / f"root{slot}-{version}.ext4", version, health)
        write_into(self.disk, SLOTS[slot], image)
        image.unlink()
        env.save_state(env.load_state().try_slot(slot, tries))

    @contextmanager
    def agent(self, cmdline: str, tries: int = 3) -> Iterator[SlotManager]:
        """The agent's real :class:`SlotManager` on this disk, as if running on the board.

        The slots and the env partition appear as loop devices (needs root);
        ``cmdline`` is what the guest saw on /proc/cmdline, so the agent knows
        which slot is booted. Its journal lives in ``workdir/state`` (the
        vehicle's data partition). Do not power on while this is open.
        """
        parts = {"A": SLOT_A, "B": SLOT_B, "env": ENV}
        with partition_devices(self.disk, parts) as devices:
            config_file = self.workdir / "fw_env.config.loop"
            config_file.write_text(f"{devices['env']} 0x0 {ENV_SIZE:#x}\n")
            (self.workdir / "cmdline").write_text(cmdline + "\n")
            config = SlotsConfig(
                A=SlotConfig(devices["A"]),
                B=SlotConfig(devices["B"]),
                bootloader=BootloaderConfig(
                    backend="uboot",
                    uboot=UBootConfig(fw_env_config=config_file, defaults=BOARD_ENV),
                ),
                tries=tries,
                state_dir=self.workdir / "state",
                cmdline=self.workdir / "cmdline",
            )
            yield SlotManager(config)

    def power_on(self, timeout_s: float = BOOT_TIMEOUT_S) -> BootRecord:
        """Boot once until the guest powers off or resets; the console log is kept."""
        self.boots += 1
        console = self.workdir / f"boot-{self.boots}.log"
        for attempt in range(1 + EMULATOR_RESET_RETRIES):
            cycle = power_cycle(self.disk, console, timeout_s)
            text = console.read_text(errors="replace") if console.exists() else ""
            if cycle.timed_out or not text or UBOOT_READY in text:
                break
            # Seen under TCG on a busy host: the emulated CPU resets while U-Boot is
            # still initialising its own devices, before it reads the disk or runs any
            # of our scripts. Nothing under test ran, so the boot is simply redone.
            log.warning(
                "boot %d: QEMU reset before U-Boot's autoboot (attempt %d); booting again",
                self.boots,
                attempt + 1,
            )
        record = BootRecord(text, timed_out=cycle.timed_out)
        log.info(
            "boot %d: U-Boot chose %s, Linux ran %s, ended by %s after %.1f s (%s)",
            self.boots,
            record.uboot_slot,
            record.slot,
            record.ending,
            cycle.seconds,
            console,
        )
        if not text:
            complaint = console.with_name(console.name + ".stderr").read_text(errors="replace")
            last = complaint.strip().splitlines()[-1:] or ["no message"]
            raise HarnessError(f"boot {self.boots}: QEMU wrote no console output: {last[0]}")
        return record
