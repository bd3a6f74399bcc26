"""Raw I/O on one boot-script (or bootloader) copy: a partition, a device region or a file.

Nothing here knows about script images: a copy is ``size`` bytes at ``offset``
of ``device``. A write is ``pwrite`` + ``fsync``; before a read-back the page
cache is dropped for the region (``POSIX_FADV_DONTNEED``), so on a block device
the check reads what the medium holds, not what the kernel remembers writing.
"""

from __future__ import annotations

import contextlib
import os
import stat

from redstone_agent.slots.bootscript_config import CopyConfig
from redstone_agent.slots.bootscript_errors import CopyIOError

CHUNK = 64 * 1024


def _fail(config: CopyConfig, what: str, exc: OSError) -> CopyIOError:
    return CopyIOError(f"{config.device}: cannot {what} ({exc.strerror or exc})")


def identity(config: CopyConfig) -> tuple[str, int, int]:
    """What the device really is: ``("blk", major, minor)`` or ``("file", st_dev, st_ino)``."""
    try:
        info = config.device.stat()
    except OSError as exc:
        raise _fail(config, "access the copy", exc) from None
    if stat.S_ISBLK(info.st_mode):
        return ("blk", os.major(info.st_rdev), os.minor(info.st_rdev))
    if stat.S_ISREG(info.st_mode):
        return ("file", info.st_dev, info.st_ino)
    raise CopyIOError(f"{config.device}: not a block device or regular file")


def capacity(config: CopyConfig) -> int:
    """Bytes the copy may hold: its configured size, else the device's size past ``offset``."""
    try:
        fd = os.open(config.device, os.O_RDONLY)
        try:
            end = os.lseek(fd, 0, os.SEEK_END)
        finally:
            os.close(fd)
    except OSError as exc:
        raise _fail(config, "open the copy", exc) from None
    room = end - config.offset
    if config.size is not None:
        if config.size > room:
            raise CopyIOError(
                f"{config.device}: size {config.size} at offset {config.offset} "
                f"runs past its end ({end} bytes)"
            )
        return config.size
    if room <= 0:
        raise CopyIOError(f"{config.device}: offset {config.offset} is at or past its end")
    return room


def read(config: CopyConfig, length: int) -> bytes:
    """The first ``length`` bytes of the copy (fewer only if the device is shorter)."""
    try:
        fd = os.open(config.device, os.O_RDONLY)
        try:
            with contextlib.suppress(OSError):  # best effort: not every fd supports it
                os.posix_fadvise(fd, config.offset, length, os.POSIX_FADV_DONTNEED)
            return os.pread(fd, length, config.offset)
        finally:
            os.close(fd)
    except OSError as exc:
        raise _fail(config, "read the copy", exc) from None


def write(config: CopyConfig, data: bytes) -> None:
    """Write ``data`` at the copy's start and make it durable (fsync)."""
    room = capacity(config)
    if len(data) > room:
        raise CopyIOError(f"{config.device}: {len(data)} bytes do not fit the copy ({room})")
    try:
        fd = os.open(config.device, os.O_WRONLY)
        try:
            done = 0
            while done < len(data):
                done += os.pwrite(fd, data[done : done + CHUNK], config.offset + done)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise _fail(config, "write the copy", exc) from None


def overlaps(a: CopyConfig, b: CopyConfig) -> bool:
    """True when the two copies share bytes of one device (or file)."""
    if identity(a) != identity(b):
        return False
    a_end = a.offset + capacity(a)
    b_end = b.offset + capacity(b)
    return a.offset < b_end and b.offset < a_end


def describe(config: CopyConfig) -> str:
    """``/dev/vda5`` or ``/dev/mmcblk0boot0@0x200``."""
    return str(config.device) if not config.offset else f"{config.device}@{config.offset:#x}"
