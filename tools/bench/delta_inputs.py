"""The delta benchmark's inputs: real release pairs, built only from pinned Debian packages.

Nothing is taken from the host's own filesystem, so the inputs are the same on every
Debian 12 machine with the same apt lists (the versions used are part of the result):

* **library pairs**: one shared library from two adjacent releases of its package;
* **a filesystem image pair**: two ext4 images of a rootfs made from the files of a
  fixed list of packages. v1 holds the older release of every package that has two,
  v2 the newer one (files replaced by their next release); packages with one release
  are identical in both; a few packages are only in v1 (removed by the upgrade) or
  only in v2 (added). Packages are taken in list order while the files fit in about 60 % of
  the image (one that does not fit is left out), so a small image holds a few small
  packages and a large one most of the list.

Packages are fetched with ``apt-get download`` and unpacked once into
``~/.cache/redstone-bench``; images are built with fixed UUID and hash seed.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

CACHE = Path.home() / ".cache" / "redstone-bench"
MIB = 1 << 20
FILL = 0.6
"""The share of an image the package files fill (the rest is free space, as on a rootfs)."""
LIBRARIES = {
    "libpython3.11": ("libpython3.11", "usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0"),
    "libcrypto3": ("libssl3", "usr/lib/x86_64-linux-gnu/libcrypto.so.3"),
}
ROOTFS = (
    # (package, role): "upgrade" has two releases (v1 the older), "same" is identical in
    # both images, "removed" only in v1, "added" only in v2. Small ones first, mixed.
    ("libc6", "upgrade"),
    ("bash", "same"),
    ("libssl3", "upgrade"),
    ("coreutils", "same"),
    ("libsystemd0", "upgrade"),
    ("libsqlite3-0", "same"),
    ("libpython3.11-minimal", "upgrade"),
    ("libpython3.11-stdlib", "upgrade"),
    ("python3.11-minimal", "upgrade"),
    ("libstdc++6", "same"),
    ("libboost-python1.74.0", "removed"),
    ("libexpat1", "upgrade"),
    ("libxml2", "upgrade"),
    ("libdb5.3", "same"),
    ("libpython3.11", "upgrade"),
    ("systemd", "upgrade"),
    ("openssl", "upgrade"),
    ("libcurl4", "upgrade"),
    ("curl", "added"),
    ("fonts-dejavu-core", "same"),
    ("libmagic-mgc", "same"),
    ("perl-base", "upgrade"),
    ("python3-setuptools", "same"),
    ("libglib2.0-0", "upgrade"),
    ("binutils-x86-64-linux-gnu", "same"),
    ("openssh-client", "upgrade"),
    ("libgfortran5", "removed"),
    ("libnss3", "upgrade"),
    ("python3-pip", "same"),
    ("tzdata", "upgrade"),
    ("libgtk-3-0", "same"),
    ("perl-modules-5.36", "upgrade"),
    ("libxslt1.1", "upgrade"),
    ("cpp-12", "same"),
    ("libx265-199", "added"),
    ("bind9-libs", "upgrade"),
    ("python3-numpy", "same"),
    ("libpq5", "upgrade"),
    ("libicu72", "same"),
    ("git", "upgrade"),
    ("libz3-4", "same"),
    ("postgresql-15", "upgrade"),
    ("libclang-cpp15", "same"),
    ("libnode108", "upgrade"),
    ("gcc-12", "same"),
    ("libopenblas0-pthread", "same"),
    ("libllvm15", "same"),
    ("libwebkit2gtk-4.0-37", "upgrade"),
    ("g++-12", "same"),
    ("libreoffice-core", "upgrade"),
)
UUID = "5e1f0b7a-0c7e-4d1a-9a35-2f0b0ad0beef"
HASH_SEED = "0b7a5e1f-4d1a-0c7e-9a35-beef2f0b0ad0"


@dataclass(frozen=True)
class Pair:
    old: Path
    new: Path
    label: str
    versions: dict[str, list[str]]
    """The package releases the pair was made from."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def versions_known(package: str) -> list[str]:
    """Every release of ``package`` apt knows, oldest first."""
    text = subprocess.run(
        ["apt-cache", "madison", package], capture_output=True, text=True, check=True
    ).stdout
    found = list(
        dict.fromkeys(line.split("|")[1].strip() for line in text.splitlines() if "|" in line)
    )
    if not found:
        raise SystemExit(f"apt knows no release of {package}; run apt-get update")
    for i in range(1, len(found)):  # insertion sort with dpkg's order (few releases)
        j = i
        while j > 0 and _older(found[j], found[j - 1]):
            found[j - 1], found[j] = found[j], found[j - 1]
            j -= 1
    return found


def _older(a: str, b: str) -> bool:
    return subprocess.run(["dpkg", "--compare-versions", a, "lt", b], check=False).returncode == 0


def two_newest(package: str) -> list[str]:
    known = versions_known(package)
    if len(known) < 2:
        raise SystemExit(f"apt knows one release of {package}; the benchmark needs two")
    return known[-2:]


def unpacked(package: str, version: str) -> Path:
    """The files of ``package`` at ``version``, downloaded and unpacked once."""
    target = CACHE / "pkgs" / f"{package}_{version.replace(':', '%3a')}"
    if target.is_dir():
        return target
    debs = CACHE / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    log(f"downloading {package}={version}")
    subprocess.run(
        ["apt-get", "download", "-q", f"{package}={version}"],
        cwd=debs,
        check=True,
        capture_output=True,
    )
    deb = next(debs.glob(f"{package}_{version.replace(':', '%3a')}_*.deb"))
    with tempfile.TemporaryDirectory(dir=debs) as unpack:
        subprocess.run(["dpkg-deb", "-x", str(deb), unpack], check=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        Path(unpack).rename(target)
        target.chmod(0o755)
    deb.unlink()
    return target


def library_pair(name: str) -> Pair:
    """One shared library from the two newest releases of its package."""
    package, member = LIBRARIES[name]
    versions = two_newest(package)
    old, new = (unpacked(package, version) / member for version in versions)
    label = f"{name} {versions[0]} -> {versions[1]}"
    return Pair(old, new, label, {package: versions})


def _tree_bytes(tree: Path) -> int:
    return sum(p.stat().st_size for p in tree.rglob("*") if p.is_file() and not p.is_symlink())


def rootfs_plan(size_mib: int) -> dict[str, tuple[str, list[str]]]:
    """Package -> (role, releases used) for an image of ``size_mib``, in list order."""
    budget = int(size_mib * MIB * FILL)
    plan: dict[str, tuple[str, list[str]]] = {}
    used = 0
    for package, role in ROOTFS:
        releases = two_newest(package) if role == "upgrade" else versions_known(package)[-1:]
        size = max(_tree_bytes(unpacked(package, release)) for release in releases)
        if used + size <= budget:
            plan[package] = (role, releases)
            used += size
    if not any(role == "upgrade" for role, _ in plan.values()):
        raise SystemExit(f"a {size_mib} MiB image holds no upgraded package")
    return plan


def _tree(plan: dict[str, tuple[str, list[str]]], into: Path, newer: bool) -> None:
    for package, (role, releases) in plan.items():
        if role == ("added" if not newer else "removed"):
            continue
        release = releases[-1] if newer else releases[0]
        shutil.copytree(unpacked(package, release), into, symlinks=True, dirs_exist_ok=True)


def ext4_pair(size_mib: int) -> Pair:
    """Two ext4 images of ``size_mib`` holding the v1 and v2 package trees."""
    plan = rootfs_plan(size_mib)
    name = "-".join(f"{p}_{r[-1]}" for p, (_, r) in plan.items())
    folder = CACHE / "ext4" / f"{size_mib}mib-{hashlib.sha256(name.encode()).hexdigest()[:16]}"
    old, new = folder / "v1.ext4", folder / "v2.ext4"
    if not new.exists():
        folder.mkdir(parents=True, exist_ok=True)
        log(f"building {size_mib} MiB ext4 images from {len(plan)} packages in {folder}")
        with tempfile.TemporaryDirectory(dir=folder) as work:
            for newer, image in ((False, old), (True, new)):
                tree = Path(work) / image.stem
                _tree(plan, tree, newer)
                subprocess.run(
                    ["mkfs.ext4", "-q", "-F", "-b", "4096", "-U", UUID]
                    + ["-E", f"hash_seed={HASH_SEED}", "-d", str(tree), str(image), f"{size_mib}M"],
                    check=True,
                )
    changed = sum(1 for role, _ in plan.values() if role == "upgrade")
    label = f"ext4 {size_mib} MiB rootfs upgrade ({len(plan)} packages, {changed} upgraded)"
    return Pair(old, new, label, {p: r for p, (_, r) in plan.items()})
