"""The kernel modules the vehicle rootfs loads itself (``modprobe``), with their ``modules.dep``.

The initramfs loads only what it needs to mount a slot (tools/qemu/kernel.py);
after ``switch_root`` systemd-udevd and ``modprobe vcan`` look in the rootfs's
``/lib/modules/<release>``. This entry (``vkmods``) holds that tree for the
modules below and everything they depend on, ``depmod``-ed for the release.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tools.qemu.cache import cached, input_key
from tools.qemu.errors import HarnessError
from tools.qemu.kernel import GUEST_MODULES, load_order, resolve_package
from tools.qemu.run import run

ROOTFS_MODULES = (
    *GUEST_MODULES,
    "can",
    "can-raw",
    "can-dev",
    "vcan",
    "can-isotp",
)
"""SocketCAN, vcan and the kernel's ISO-TP (``CONFIG_CAN_ISOTP=m`` in Debian's 6.1)."""
TREE = "modules"
"""``modules/<release>/kernel/...``; the image build runs the guest's own ``depmod``."""


def build_kmods() -> Path:
    """The cached ``lib/modules`` directory (one release inside) to copy into a rootfs."""
    package, version = resolve_package()

    def build(out: Path) -> None:
        work = out / "work"
        work.mkdir()
        run(["apt-get", "download", f"{package}={version}"], cwd=work)
        debs = list(work.glob("*.deb"))
        if len(debs) != 1:
            raise HarnessError(f"apt-get download {package} left {len(debs)} .deb files")
        unpacked = work / "tree"
        run(["dpkg", "-x", debs[0], unpacked])
        (module_dir,) = (unpacked / "lib" / "modules").iterdir()
        release = module_dir.name
        run(["busybox", "depmod", "-b", unpacked, release])
        wanted = load_order((module_dir / "modules.dep").read_text(), ROOTFS_MODULES)
        target = out / TREE / release
        for relative in wanted:
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(module_dir / relative, target / relative)
        for meta in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
            if (module_dir / meta).exists():
                shutil.copy(module_dir / meta, target / meta)
        shutil.rmtree(work)

    key = input_key([package, version, *ROOTFS_MODULES])
    return cached("vkmods", key, build) / TREE
