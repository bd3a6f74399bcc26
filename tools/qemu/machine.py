"""One power cycle of the test board under QEMU (TCG), serial console to a file.

QEMU runs with ``-no-reboot``: whatever ends the boot — the guest powering
off, rebooting, a kernel panic with ``panic=1``, U-Boot's ``reset`` — ends the
QEMU process, so each call is exactly one boot and the caller decides whether
to power the board on again. The disk persists between calls, like flash.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tools.qemu.cache import cached, input_key
from tools.qemu.errors import HarnessError

QEMU = "qemu-system-x86_64"
FIRMWARE = Path("/usr/lib/u-boot/qemu-x86/u-boot.rom")
"""Debian's 32-bit qemu-x86 U-Boot (the x86_64 build resets at zboot)."""
BOOTDELAY = (b"\0bootdelay=2\0", b"\0bootdelay=0\0")
"""The one change to Debian's ROM (:func:`firmware`): its built-in environment's autoboot
countdown, 2 s of every boot (U-Boot's timer report: ``usb_start`` 2,006,421 us, the
countdown spinning on the one emulated CPU). 0 still checks once for a key, as a
production board set to boot at once does; nothing else in the ROM changes."""
MEMORY_MIB = 512


@dataclass(frozen=True)
class PowerCycle:
    """How one QEMU run ended."""

    exit_code: int | None
    timed_out: bool
    seconds: float


def missing_requirements() -> str | None:
    """Why QEMU boots cannot run on this machine, or None when they can."""
    if shutil.which(QEMU) is None:
        return f"{QEMU} not installed (Debian package qemu-system-x86)"
    if not FIRMWARE.is_file():
        return f"{FIRMWARE} missing (Debian package u-boot-qemu)"
    for tool in ("mkimage", "fw_setenv", "busybox", "mcopy", "mkfs.vfat", "sfdisk", "mkfs.ext4"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (see tools/debian-packages.txt)"
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        return "apt-get/dpkg missing: the guest kernel comes from Debian's archive"
    return None


@functools.cache
def firmware() -> Path:
    """:data:`FIRMWARE` with :data:`BOOTDELAY` applied (cached, keyed by the ROM's bytes)."""
    old, new = BOOTDELAY

    def build(out: Path) -> None:
        rom = FIRMWARE.read_bytes()
        if rom.count(old) != 1:
            raise HarnessError(f"{FIRMWARE}: expected one {old!r} in its default environment")
        (out / FIRMWARE.name).write_bytes(rom.replace(old, new))

    return cached("firmware", input_key([FIRMWARE, old, new]), build) / FIRMWARE.name


def qemu_argv(disk: Path, console_log: Path) -> list[str]:
    """The QEMU command line: TCG only (KVM hangs on these hosts), one virtio disk."""
    return [
        QEMU,
        "-accel",
        "tcg",
        "-m",
        str(MEMORY_MIB),
        "-bios",
        str(firmware()),
        "-display",
        "none",
        # No VGA: U-Boot ran the VGA option ROM at every boot, and under load it
        # sometimes never came back (the console stopped after "Loading Environment").
        "-vga",
        "none",
        "-monitor",
        "none",
        "-serial",
        f"file:{console_log}",
        "-nic",
        "none",
        "-no-reboot",
        "-drive",
        f"file={disk},if=virtio,format=raw",
    ]


def power_cycle(disk: Path, console_log: Path, timeout_s: float) -> PowerCycle:
    """Boot ``disk`` once; stop QEMU if the boot has not ended after ``timeout_s``.

    QEMU's own complaints go to ``<console_log>.stderr``. QEMU is killed on
    any way out of this function (a timeout, pytest's timeout, Ctrl-C).
    """
    started = time.monotonic()
    timed_out = False
    with console_log.with_name(console_log.name + ".stderr").open("wb") as stderr:
        process = subprocess.Popen(
            qemu_argv(disk, console_log),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    code = None if timed_out else process.returncode
    return PowerCycle(code, timed_out, time.monotonic() - started)
