"""The guest's initramfs: busybox, the test init, kernel modules and libubootenv's tools.

``fw_printenv``/``fw_setenv`` are the host's binaries copied with the shared
libraries ``ldd`` names, so the guest commits through the same libubootenv the
agent uses. The archive is a gzip-compressed newc cpio made by busybox; it is
cached by the hash of everything that goes in.
"""

from __future__ import annotations

import gzip
import re
import shutil
from pathlib import Path

from tools.qemu.cache import cached, input_key
from tools.qemu.errors import HarnessError
from tools.qemu.kernel import Kernel
from tools.qemu.run import run, run_bytes

HERE = Path(__file__).resolve().parent
GUEST_INIT = HERE / "guest-init.sh"
GUEST_FW_ENV_CONFIG = HERE.parent.parent / "etc" / "u-boot" / "fw_env.config.qemu"
ENV_TOOLS = ("fw_printenv", "fw_setenv")
FILE_NAME = "initrd.img"


def _which(name: str) -> Path:
    found = shutil.which(name)
    if found is None:
        raise HarnessError(f"{name} not found (see tools/debian-packages.txt)")
    return Path(found).resolve()


def shared_libraries(binary: Path) -> list[Path]:
    """Absolute paths of the libraries (and loader) ``binary`` needs, as ldd names them."""
    libraries = []
    for line in run(["ldd", binary]).splitlines():
        match = re.search(r"(/\S+) \(0x", line)
        if match:
            libraries.append(Path(match.group(1)))
    return libraries


def _install(source: Path, tree: Path, target: Path) -> None:
    """Copy ``source``'s content (following links) to the absolute ``target`` in ``tree``."""
    dest = tree / target.relative_to("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source.resolve(), dest)


def _populate(tree: Path, kernel: Kernel, busybox: Path, tools: list[Path]) -> None:
    for directory in ("bin", "sbin", "usr/bin", "etc", "proc", "sys", "dev", "tmp", "rootfs"):
        (tree / directory).mkdir(parents=True, exist_ok=True)
    shutil.copy(busybox, tree / "bin" / "busybox")
    for applet in run([busybox, "--list"]).split():
        link = tree / "bin" / applet
        if applet != "busybox" and not link.exists():
            link.symlink_to("busybox")
    shutil.copytree(kernel.modules, tree / "lib" / "modules")
    for tool in tools:
        _install(tool, tree, Path("/usr/bin") / tool.name)
        for library in shared_libraries(tool):
            _install(library, tree, library)
    shutil.copy(GUEST_FW_ENV_CONFIG, tree / "etc" / "fw_env.config")
    shutil.copy(GUEST_INIT, tree / "init")
    (tree / "init").chmod(0o755)


def build_initramfs(kernel: Kernel) -> Path:
    """The cached ``initrd.img`` for ``kernel``."""
    busybox = _which("busybox")
    tools = [_which(name) for name in ENV_TOOLS]
    libraries = sorted({lib for tool in tools for lib in shared_libraries(tool)})
    key = input_key(
        [
            GUEST_INIT,
            busybox,
            kernel.directory.name,
            GUEST_FW_ENV_CONFIG,
            *(path.resolve() for path in tools + libraries),
        ]
    )

    def build(out: Path) -> None:
        tree = out / "tree"
        _populate(tree, kernel, busybox, tools)
        listing = sorted(str(p.relative_to(tree)) for p in tree.rglob("*"))
        archive = run_cpio(tree, listing)
        (out / FILE_NAME).write_bytes(gzip.compress(archive, compresslevel=6))
        shutil.rmtree(tree)

    return cached("initramfs", key, build) / FILE_NAME


def run_cpio(tree: Path, listing: list[str]) -> bytes:
    """A newc archive of ``listing`` (paths relative to ``tree``), all owned by root."""
    names = ("\n".join(listing) + "\n").encode()
    return run_bytes(["busybox", "cpio", "-o", "-H", "newc", "-R", "0:0"], cwd=tree, stdin=names)
