"""Rootfs slot images for the test board: small ext4 file systems made without root.

A slot image carries what the guest's init checks: ``/etc/redstone-release``
and the slot's own health check ``/usr/lib/redstone/health-check``. Its
behaviour is the image's, as on a vehicle: a good image passes, a bad one
fails the check (the init reboots without committing) or crashes the kernel.
"""

from __future__ import annotations

import enum
import tempfile
from pathlib import Path

from tools.qemu.layout import SLOT_A
from tools.qemu.run import run

IMAGE_SIZE = SLOT_A.size


class Health(enum.Enum):
    """How the image's health check behaves on a trial boot."""

    OK = "ok"
    FAIL = "fail"
    PANIC = "panic"


HEALTH_CHECKS = {
    Health.OK: 'echo "health-check: all services up"\nexit 0\n',
    Health.FAIL: 'echo "health-check: service redstone-app failed to start"\nexit 1\n',
    # A kernel crash: with panic=1 on the command line the machine resets.
    Health.PANIC: 'echo "health-check: triggering a kernel crash"\necho c >/proc/sysrq-trigger\n',
}


def build_rootfs(path: Path, version: str, health: Health) -> Path:
    """Write an ext4 slot image of exactly one slot's size to ``path``."""
    with tempfile.TemporaryDirectory(prefix="redstone-rootfs-") as tmp:
        tree = Path(tmp)
        (tree / "etc").mkdir()
        (tree / "etc" / "redstone-release").write_text(f"version={version}\n")
        checks = tree / "usr" / "lib" / "redstone"
        checks.mkdir(parents=True)
        (checks / "health-check").write_text("#!/bin/sh\n" + HEALTH_CHECKS[health])
        (checks / "health-check").chmod(0o755)
        with path.open("wb") as handle:
            handle.truncate(IMAGE_SIZE)
        run(["mkfs.ext4", "-q", "-F", "-L", f"redstone-{version}", "-d", tree, path])
    return path
