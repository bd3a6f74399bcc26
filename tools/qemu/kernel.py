"""The guest kernel: Debian's generic amd64 kernel and the few modules the guest loads.

The generic kernel builds virtio, ext4 and CAN as modules (the cloud kernel has
no CAN), so the initramfs must carry them. The package is resolved through the
``linux-image-amd64`` metapackage, fetched with ``apt-get download`` (no root
needed) and unpacked with ``dpkg -x``; ``busybox depmod`` computes the module
dependencies. The result is cached by package name and version.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from tools.qemu.cache import cached, input_key
from tools.qemu.errors import HarnessError
from tools.qemu.run import run

METAPACKAGE = "linux-image-amd64"
GUEST_MODULES = ("virtio_pci", "virtio_blk", "crc32c_generic", "ext4")
"""What the guest's init loads: the virtio disk and ext4 (with its checksum)."""


@dataclass(frozen=True)
class Kernel:
    """A cached kernel: the bzImage and its modules in load order."""

    directory: Path

    @property
    def vmlinuz(self) -> Path:
        """The bzImage U-Boot's ``zboot`` starts."""
        return self.directory / "vmlinuz"

    @property
    def modules(self) -> Path:
        """Directory of ``.ko`` files plus ``load-order`` (one file name per line)."""
        return self.directory / "modules"


def resolve_package() -> tuple[str, str]:
    """The versioned image package behind the metapackage, and its version."""
    depends = run(["apt-cache", "depends", METAPACKAGE])
    match = re.search(r"Depends: (linux-image-[0-9][^\s]*)", depends)
    if match is None:
        raise HarnessError(
            f"apt-cache knows no {METAPACKAGE}: run 'apt-get update' (Debian main needed)"
        )
    package = match.group(1)
    shown = run(["apt-cache", "show", "--no-all-versions", package])
    version = re.search(r"^Version: (\S+)", shown, re.MULTILINE)
    if version is None:
        raise HarnessError(f"apt-cache show {package} names no version")
    return package, version.group(1)


def load_order(modules_dep: str, wanted: tuple[str, ...]) -> list[str]:
    """Relative module paths in an order where every module follows its dependencies."""
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in modules_dep.splitlines():
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
        by_name[Path(path).name.removesuffix(".ko")] = path
    order: list[str] = []

    def visit(path: str) -> None:
        if path in order:
            return
        for dep in reversed(deps.get(path, [])):
            visit(dep)
        order.append(path)

    for name in wanted:
        if name not in by_name:
            raise HarnessError(f"kernel module {name} not found in modules.dep")
        visit(by_name[name])
    return order


def fetch_kernel() -> Kernel:
    """The cached kernel, downloading and unpacking it on first use."""
    package, version = resolve_package()

    def build(out: Path) -> None:
        work = out / "work"
        work.mkdir()
        try:
            run(["apt-get", "download", f"{package}={version}"], cwd=work)
        except HarnessError as exc:
            raise HarnessError(f"{exc} (stale package lists? run 'apt-get update')") from None
        debs = list(work.glob("*.deb"))
        if len(debs) != 1:
            raise HarnessError(f"apt-get download {package} left {len(debs)} .deb files")
        tree = work / "tree"
        run(["dpkg", "-x", debs[0], tree])
        releases = sorted((tree / "lib" / "modules").iterdir())
        if len(releases) != 1:
            raise HarnessError(f"{package}: expected one module tree, found {len(releases)}")
        release = releases[0].name
        run(["busybox", "depmod", "-b", tree, release])
        module_dir = releases[0]
        order = load_order((module_dir / "modules.dep").read_text(), GUEST_MODULES)
        (out / "modules").mkdir()
        for relative in order:
            shutil.copy(module_dir / relative, out / "modules" / Path(relative).name)
        names = "".join(Path(relative).name + "\n" for relative in order)
        (out / "modules" / "load-order").write_text(names)
        shutil.copy(tree / "boot" / f"vmlinuz-{release}", out / "vmlinuz")
        (out / "release").write_text(release + "\n")
        shutil.rmtree(work)

    key = input_key([package, version, *GUEST_MODULES])
    return Kernel(cached("kernel", key, build))
