"""The vehicle rootfs's Debian base: ``debootstrap --variant=minbase`` plus what the units need.

Needs root (debootstrap's chroot). Trimmed of documentation, manual pages and
locales. Cached as its own entry (``vbase``), keyed by the suite, mirror and
package list only, so agent changes never re-run debootstrap (~50 s).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tools.qemu.cache import cached, input_key
from tools.qemu.errors import HarnessError
from tools.qemu.run import run

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
TREE = "tree"


def missing_root() -> str | None:
    """Why the vehicle rootfs cannot be built here, or None."""
    if os.geteuid() != 0:
        return "building the vehicle rootfs needs root (debootstrap, chroot)"
    if shutil.which("debootstrap") is None:
        return "debootstrap not installed (see tools/debian-packages.txt)"
    return None


def build_base() -> Path:
    """The cached base tree (a directory owned by root, as it will be in the guest)."""
    reason = missing_root()
    if reason is not None:
        raise HarnessError(reason)
    key = input_key([SUITE, MIRROR, *PACKAGES, *TRIM])

    def build(out: Path) -> None:
        tree = out / TREE
        include = ",".join(PACKAGES)
        run(["debootstrap", "--variant=minbase", f"--include={include}", SUITE, tree, MIRROR])
        for path in TRIM:
            shutil.rmtree(tree / path, ignore_errors=True)
        (tree / "var" / "cache" / "apt").mkdir(parents=True, exist_ok=True)

    return cached("vbase", key, build) / TREE
