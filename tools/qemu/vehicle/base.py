"""The vehicle rootfs's Debian base: ``debootstrap --variant=minbase`` plus what the units need.

Needs root (debootstrap's chroot). Trimmed of documentation, manual pages and
locales. Cached as its own entry (``vbase``), keyed by the suite, mirror,
package list and foreign architecture only, so agent changes never re-run
debootstrap (~50 s for the host's amd64).

A foreign architecture (``arm64``, the target boards: tools/qemu/vehicle/arm64.py) is
bootstrapped with ``--foreign`` and its second stage run in the chroot under qemu-user
(binfmt_misc with the interpreter fixed at registration, so the chroot needs no copy of
it); it also carries Debian's kernel and the initramfs its postinst makes (``/boot``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tools.qemu.cache import cached, input_key
from tools.qemu.errors import HarnessError
from tools.qemu.run import EMULATED_TIMEOUT_S, run

HOST_ARCH = "amd64"

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "udev",
    "dbus",
    "python3",
    "python3-venv",
    "libubootenv-tool",
    "iproute2",
    "kmod",
    "can-utils",  # candump in the guest: evidence of real kernel CAN traffic
)
TRIM = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "var/cache/apt",
    "var/lib/apt/lists",
    "var/cache/debconf/templates.dat-old",
)
FOREIGN_PACKAGES = {"arm64": ("linux-image-arm64",)}
"""What a foreign base adds: its own kernel (the amd64 guests boot the host's cached one)."""
TREE = "tree"


def missing_root() -> str | None:
    """Why the vehicle rootfs cannot be built here, or None."""
    if os.geteuid() != 0:
        return "building the vehicle rootfs needs root (debootstrap, chroot)"
    if shutil.which("debootstrap") is None:
        return "debootstrap not installed (see tools/debian-packages.txt)"
    return None


def unmount_under(tree: Path) -> None:
    """Lazily unmount everything mounted below ``tree``, deepest first."""
    root = str(tree.resolve())
    with Path("/proc/mounts").open() as mounts:
        points = [line.split()[1] for line in mounts]
    for point in sorted((p for p in points if p.startswith(root + "/")), reverse=True):
        run(["umount", "-l", point])


def build_base(arch: str = HOST_ARCH) -> Path:
    """The cached base tree (a directory owned by root, as it will be in the guest)."""
    reason = missing_root()
    if reason is not None:
        raise HarnessError(reason)
    packages = (*PACKAGES, *FOREIGN_PACKAGES.get(arch, ()))
    foreign = [] if arch == HOST_ARCH else [arch]  # the amd64 key is what it always was
    key = input_key([SUITE, MIRROR, *packages, *TRIM, *foreign])

    def build(out: Path) -> None:
        tree = out / TREE
        include = f"--include={','.join(packages)}"
        if not foreign:
            run(["debootstrap", "--variant=minbase", include, SUITE, tree, MIRROR])
        else:
            run(
                ["debootstrap", "--variant=minbase", f"--arch={arch}", "--foreign", include]
                + [SUITE, tree, MIRROR]
            )
            second = ["chroot", str(tree), "/debootstrap/debootstrap", "--second-stage"]
            try:
                run(second, timeout=EMULATED_TIMEOUT_S)
            finally:
                unmount_under(tree)  # a failed second stage leaves /proc and /sys mounted
        for path in TRIM:
            shutil.rmtree(tree / path, ignore_errors=True)
        (tree / "var" / "cache" / "apt").mkdir(parents=True, exist_ok=True)

    return cached("vbase", key, build) / TREE
