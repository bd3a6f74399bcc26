"""The vehicle image for aarch64 (issue 13 item 4): the target boards are ARM.

The same rootfs as the amd64 vehicle image (:mod:`tools.qemu.vehicle.image`: Debian 12
minbase, the agent from its wheel in ``/opt/redstone``, the units of ``systemd/``), built
for ``arm64`` and booted on QEMU's ``virt`` machine with ``-cpu cortex-a57`` (``-cpu max``
does not boot Debian's kernel there; ../shared/PLATFORM.md).

* **Base**: ``debootstrap --arch=arm64 --foreign``, its second stage in a chroot under
  qemu-user (:func:`register_binfmt`), with Debian's ``linux-image-arm64`` and the
  initramfs its postinst makes (:func:`tools.qemu.vehicle.base.build_base`).
* **Wheels**: the ``manylinux_2_17_aarch64`` wheels of every dependency
  (:func:`tools.qemu.vehicle.wheels.dependency_wheelhouse`).
* **Boot**: no U-Boot (the smoke is about the agent on ARM, not the bootloader: the
  amd64 boards test that): QEMU loads the kernel and initramfs (``-kernel``/``-initrd``)
  and the rootfs image is ``/dev/vda``, mounted read-write; state lives on it.
* **Journal**: kept on the rootfs (``/var/log/journal`` links to
  ``/var/lib/redstone/journal`` as on the boards), so a test reads it after power-off.
* **No command channel**: ``virt`` has one UART, the kernel's console, and a virtio
  console for the channel never came up before the daemons did. A test adds a oneshot
  unit that prints its findings on the console and powers off; :func:`boot` runs one
  power cycle and returns the console text.

Cached as ``a64image`` (kernel, initramfs, ``rootfs.ext4``). The cold build runs
debootstrap's second stage and ``pip install`` emulated: about 10 minutes here.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tools.qemu.errors import HarnessError
from tools.qemu.run import EMULATED_TIMEOUT_S, run
from tools.qemu.vehicle.base import missing_root
from tools.qemu.vehicle.image import ENABLED, Flavour, build_flavour

ARCH = "arm64"
QEMU = "qemu-system-aarch64"
CPU = "cortex-a57"
MEMORY_MIB = 1024
CPUS = 2
"""Multi-threaded TCG: systemd starts someipyd, the Sub and the Master at once."""
IMAGE_SIZE = 1 << 30
"""The arm64 base carries a whole kernel's modules (the amd64 image copies a few)."""
BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
BINFMT_CONF = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")
"""Debian's qemu-user-static registration line (flags ``F``: interpreter fixed at
registration, usable inside a chroot without a copy)."""
KERNEL = "vmlinuz"
INITRD = "initrd.img"
CMDLINE = "root=/dev/vda rw console=ttyAMA0 panic=1 loglevel=4 redstone.slot=A"
"""``redstone.slot=A``: what the boot script appends on a board (the Sub reads it)."""
FSTAB = (
    "# The aarch64 smoke image: one read-write rootfs on /dev/vda, no data partition.\n"
    "tmpfs  /tmp      tmpfs  mode=1777,size=64m  0 0\n"
    "tmpfs  /var/tmp  tmpfs  mode=1777,size=16m  0 0\n"
)


def missing_arm64() -> str | None:
    """Why the aarch64 image cannot be built or booted here, or None."""
    reason = missing_root()
    if reason is not None:
        return reason
    for tool, package in ((QEMU, "qemu-system-arm"), ("qemu-aarch64-static", "qemu-user-static")):
        if shutil.which(tool) is None:
            return f"{tool} not installed (Debian package {package})"
    if not BINFMT_CONF.is_file():
        return f"{BINFMT_CONF} missing (Debian package qemu-user-static)"
    return None


def register_binfmt() -> None:
    """Make the kernel run aarch64 ELF files through qemu-user (for the chroot steps)."""
    if not (BINFMT_DIR / "register").exists():
        try:
            subprocess.run(
                ["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT_DIR)],
                check=True,
                capture_output=True,
            )
        except subprocess.CalledProcessError as exc:
            raise HarnessError(f"cannot mount binfmt_misc: {exc.stderr.decode().strip()}") from exc
    line = BINFMT_CONF.read_text().strip()
    name = line.split(":")[1]
    if not (BINFMT_DIR / name).exists():
        (BINFMT_DIR / "register").write_text(line)


def build_arm64_image() -> Path:
    """The cached directory with ``vmlinuz``, ``initrd.img`` and ``rootfs.ext4``."""
    reason = missing_arm64()
    if reason is not None:
        raise HarnessError(reason)
    register_binfmt()
    here = Path(__file__).resolve()
    return build_flavour(Flavour(ARCH, "a64image", IMAGE_SIZE, _finish, (here,)))


def _finish(tree: Path, out: Path) -> None:
    """Kernel and initramfs out of /boot; the smoke's fstab; units enabled."""
    boot = tree / "boot"
    (kernel,) = sorted(boot.glob("vmlinuz-*"))
    (initrd,) = sorted(boot.glob("initrd.img-*"))
    shutil.copy(kernel, out / KERNEL)
    shutil.copy(initrd, out / INITRD)
    for item in boot.iterdir():
        item.unlink()
    (tree / "etc" / "fstab").write_text(FSTAB)
    units = [unit for unit in ENABLED if unit != "redstone-test-console.service"]  # no channel
    run(["chroot", tree, "systemctl", "enable", *units], timeout=EMULATED_TIMEOUT_S)
    (tree / "etc" / "hostname").write_text("vehicle-arm64\n")
    # /var/log/journal links to the data partition's journal directory on the amd64
    # boards; here it is on the rootfs, so every boot's journal survives for the test.
    (tree / "var" / "lib" / "redstone" / "journal").mkdir(parents=True, exist_ok=True)


def boot(image_dir: Path, disk: Path, console: Path, timeout: float) -> str:
    """One power cycle of ``disk`` (a copy of the image's ``rootfs.ext4``) on ``virt``:
    the console's text once the guest powered off (or ``timeout`` ran out: QEMU is
    killed and the text so far returned)."""
    argv = [
        QEMU,
        "-M",
        "virt",
        "-cpu",
        CPU,
        "-m",
        str(MEMORY_MIB),
        "-smp",
        str(CPUS),
        "-display",
        "none",
        "-monitor",
        "none",
        "-nic",
        "none",
        "-no-reboot",
        "-kernel",
        str(image_dir / KERNEL),
        "-initrd",
        str(image_dir / INITRD),
        "-append",
        CMDLINE,
        "-serial",
        f"file:{console}",
        "-drive",
        f"file={disk},if=virtio,format=raw",
    ]
    with console.with_name(console.name + ".stderr").open("wb") as stderr:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr
        )
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return console.read_text(errors="replace")
