"""Guards before any byte is written to a slot.

The installer refuses a target that is the running slot, that is mounted, or
that is the same device as the running slot under another name (a symlink, a
loop device over the same file). Mounted-ness is read from mountinfo by device
number, which is what the kernel actually compares.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from redstone_agent.slots.errors import UnsafeTarget

SYS_BLOCK = Path("/sys/block")


def device_identity(path: Path) -> tuple[str, int, int]:
    """What a slot really is: ``("blk", major, minor)`` or ``("file", st_dev, st_ino)``."""
    try:
        info = path.stat()
    except OSError as exc:
        raise UnsafeTarget(f"{path}: cannot access slot device ({exc.strerror})") from None
    if stat.S_ISBLK(info.st_mode):
        return ("blk", os.major(info.st_rdev), os.minor(info.st_rdev))
    if stat.S_ISREG(info.st_mode):
        return ("file", info.st_dev, info.st_ino)
    raise UnsafeTarget(f"{path}: not a block device or regular file")


def mounted_devices(mountinfo: Path) -> set[tuple[int, int]]:
    """Major/minor numbers of every mounted filesystem's source."""
    devices = set()
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError as exc:
        raise UnsafeTarget(f"{mountinfo}: cannot read mount table ({exc.strerror})") from None
    for line in lines:
        fields = line.split()
        if len(fields) > 2 and ":" in fields[2]:
            major, _, minor = fields[2].partition(":")
            if major.isdigit() and minor.isdigit():
                devices.add((int(major), int(minor)))
    return devices


def loop_devices_backed_by(path: Path) -> list[tuple[int, int]]:
    """Loop devices whose backing file is ``path`` (a file slot can be mounted that way)."""
    found = []
    target = str(path.resolve())
    for backing in SYS_BLOCK.glob("loop*/loop/backing_file"):
        try:
            if backing.read_text().strip() == target:
                dev = (backing.parent.parent / "dev").read_text().strip()
                major, _, minor = dev.partition(":")
                found.append((int(major), int(minor)))
        except (OSError, ValueError):
            continue
    return found


def check_writable_slot(target: Path, booted: Path, mountinfo: Path) -> None:
    """Raise :class:`UnsafeTarget` unless ``target`` may be overwritten."""
    identity = device_identity(target)
    if booted.exists() and identity == device_identity(booted):
        raise UnsafeTarget(f"{target}: is the running slot; refusing to write it")
    mounted = mounted_devices(mountinfo)
    if identity[0] == "blk":
        if identity[1:] in mounted:
            raise UnsafeTarget(f"{target}: is mounted; unmount it before installing")
    elif any(dev in mounted for dev in loop_devices_backed_by(target)):
        raise UnsafeTarget(f"{target}: is mounted through a loop device; unmount it first")
