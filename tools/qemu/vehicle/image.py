"""The vehicle slot image: the Debian base with the agent installed from its wheel.

Installed as ``yocto-layer/meta-redstone`` installs it (same paths): the
agent in a virtualenv ``/opt/redstone`` (``pip install --no-index`` from the
host's wheelhouse, byte-compiled — imports are slow under TCG) with its
console scripts linked into ``/usr/bin``; the units, D-Bus policy and
activation files, sysusers.d and tmpfiles.d from ``systemd/``; the example
configs; ``/etc/fw_env.config`` naming the env partition. The rootfs is
mounted read-only; ``/var/lib/redstone`` is the data partition (fstab).

Test-only additions live under ``/usr/lib/redstone-test`` and units named
``redstone-test-*`` (guestfs/): the host's command channel, multicast on
loopback, vcan0, and the bind mount of the factory provisioning.

Cached (``vimage``) by the project wheel's content, the wheelhouse, the
configs, units, guest files and this code; the base and modules are their own
entries.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tools.qemu.cache import cached, input_key
from tools.qemu.errors import HarnessError
from tools.qemu.run import EMULATED_TIMEOUT_S, run, run_bytes
from tools.qemu.vehicle.base import HOST_ARCH, build_base
from tools.qemu.vehicle.kmods import build_kmods
from tools.qemu.vehicle.wheels import REPO, REQUIREMENT, build_project_wheel, dependency_wheelhouse

HERE = Path(__file__).resolve().parent
GUESTFS = HERE / "guestfs"
SYSTEMD = REPO / "systemd"
VENV = "/opt/redstone"
IMAGE = "rootfs.ext4"
IMAGE_SIZE = 288 << 20
"""Bytes: the tree (about 230 MiB) and room for a release's edits, inside the vehicle
layout's 384 MiB slots (tools/qemu/layout.py VEHICLE). Every delta install reads, writes
and hashes the whole image, at about 0.15 s per MiB under TCG: no more than needed."""
PACKAGING = ("pip", "setuptools", "wheel", "_distutils_hack", "pkg_resources")
"""What ``python3 -m venv`` brings and a vehicle never runs (the recipe has none either)."""
FACTORY_VERSION = "1"
JOURNAL = "/var/lib/redstone/journal"
"""Test-only: /var/log/journal points here (the data partition); provisioning makes it."""
MACHINE_ID = "5ed5700e0a1b4c2d9e8f7a6b5c4d3e2f"
COMMANDS = (
    "redstone-master",
    "redstone-sub",
    "redstone-someipyd",
    "redstonectl",
    "redstone-ecusim",
    "redstone-cansim",
    "redstone-delta",
    "redstone-repo",
)
"""The console scripts the recipe's packages ship (not redstone-cloud, redstone-vehicle)."""
UNITS = (
    "redstone-master.service",
    "redstone-sub.service",
    "redstone-health.service",
    "redstone-sub-commit.service",
    "someipyd.service",
)
TEST_UNITS = (
    "redstone-test-console.service",
    "redstone-test-net.service",
    "redstone-test-vcan.service",
)
MASKED = (
    # e2fsprogs' snapshot reaper: scans for LVM e2scrub snapshots at every boot (no LVM
    # here) and took 10 s of the single emulated CPU, beside the Master's start.
    "e2scrub_reap.service",
    "e2scrub_all.timer",
    # Debian's package housekeeping: a vehicle has no apt, and a timer firing mid-test
    # would run apt on the guest's one CPU.
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "fstrim.timer",
    # No VGA (tools/qemu/machine.py): nobody sees tty1; the serial getty stays.
    "getty@tty1.service",
    # Modules (drm, fuse, efi_pstore, configfs, dm_mod, loop) the image does not carry
    # (vehicle/kmods.py): one failing modprobe per instance at every boot.
    "modprobe@.service",
    # Debugging file systems nothing in a vehicle mounts.
    "dev-hugepages.mount",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    # /var/lib/systemd is a tmpfs (read-only root): the seed it saves never survives.
    "systemd-random-seed.service",
)
"""Debian units a vehicle image (the Yocto recipe's) does not have or need: masked, so
each boot's emulated CPU goes to the units under test (``systemd-analyze blame``)."""
ENABLED = (
    "someipyd.service",
    "redstone-sub.service",
    "redstone-master.service",
    "redstone-health.service",
    "redstone-sub-commit.service",
    *TEST_UNITS,
)
# Example configs, as the recipe installs them into /etc/redstone.
CONFIGS = (
    "master.toml",
    "vehicle.dbc",
    "sub.toml",
    "someipyd.json",
    "ecus/bcm.toml",
    "ecus/gateway.toml",
    "ecus/sim-bcm.toml",
    "ecus/sim-gateway.toml",
)


def _install(source: Path, tree: Path, target: str, mode: int = 0o644) -> None:
    dest = tree / target.lstrip("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, dest)
    dest.chmod(mode)


def _chroot(tree: Path, *argv: str) -> str:
    return run(["chroot", tree, *argv], timeout=EMULATED_TIMEOUT_S)  # arm64: under qemu-user


def _install_agent(tree: Path, wheels: Path, *, strip: bool) -> None:
    staged = tree / "tmp" / "wheels"
    shutil.copytree(wheels, staged)
    _chroot(tree, "python3", "-m", "venv", VENV)
    pip = f"{VENV}/bin/pip"
    _chroot(
        tree,
        pip,
        "install",
        "-q",
        "--no-index",
        "--no-cache-dir",
        "--find-links",
        "/tmp/wheels",
        REQUIREMENT,
    )
    shutil.rmtree(staged)
    site = next((tree / VENV.lstrip("/") / "lib").glob("python3*/site-packages"))
    # As the recipe: no cloud backend or virtual vehicle in a vehicle.
    shutil.rmtree(site / "redstone_cloud", ignore_errors=True)
    shutil.rmtree(site / "redstone_agent" / "vvehicle", ignore_errors=True)
    for name in ("redstone-cloud", "redstone-vehicle"):
        (tree / VENV.lstrip("/") / "bin" / name).unlink(missing_ok=True)
    _slim(tree / VENV.lstrip("/"), site, strip=strip)
    _chroot(tree, f"{VENV}/bin/python3", "-m", "compileall", "-q", "-j", "0", VENV)
    for command in COMMANDS:
        link = tree / "usr" / "bin" / command
        link.unlink(missing_ok=True)
        link.symlink_to(f"{VENV}/bin/{command}")


def _slim(venv: Path, site: Path, *, strip: bool) -> None:
    """Drop the venv's packaging tools and strip its extension modules' symbols (a
    stripped tree is what a Yocto image ships: do_package strips every ELF)."""
    for item in site.iterdir():
        name = item.name.split("-", 1)[0]
        if name in PACKAGING or item.name == "distutils-precedence.pth":
            if item.is_dir():
                shutil.rmtree(item)
            else:
                item.unlink()
    for script in venv.glob("bin/pip*"):
        script.unlink()
    libraries = sorted(str(p) for p in site.rglob("*.so*") if p.is_file())
    if strip and libraries:
        run(["strip", "--strip-unneeded", *libraries])


def _install_systemd_files(tree: Path) -> None:
    for unit in UNITS:
        _install(SYSTEMD / unit, tree, f"/usr/lib/systemd/system/{unit}")
    for policy in ("org.redstone.Master.conf", "org.redstone.Sub.conf"):
        _install(SYSTEMD / policy, tree, f"/usr/share/dbus-1/system.d/{policy}")
    for service in ("org.redstone.Master.service", "org.redstone.Sub.service"):
        _install(
            SYSTEMD / "system-services" / service,
            tree,
            f"/usr/share/dbus-1/system-services/{service}",
        )
    for kind in ("tmpfiles.d", "sysusers.d"):
        for conf in ("redstone.conf", "redstone-master.conf"):
            _install(SYSTEMD / kind / conf, tree, f"/usr/lib/{kind}/{conf}")
    for config in CONFIGS:
        _install(REPO / "etc" / "redstone" / config, tree, f"/etc/redstone/{config}")
    _install(REPO / "etc" / "u-boot" / "fw_env.config.qemu", tree, "/etc/fw_env.config")
    _install(REPO / "etc" / "u-boot" / "qemu-x86.env", tree, "/etc/u-boot-initial-env")
    _chroot(tree, "systemd-sysusers")


def _install_test_files(tree: Path) -> None:
    _install(GUESTFS / "console.py", tree, "/usr/lib/redstone-test/console.py", 0o755)
    for unit in TEST_UNITS:
        _install(GUESTFS / unit, tree, f"/usr/lib/systemd/system/{unit}")
    _install(GUESTFS / "fstab", tree, "/etc/fstab")
    (tree / "media" / "stick").mkdir(parents=True, exist_ok=True)  # the "USB stick"
    # The journal of every boot, kept on the data partition: a test reads a trial boot's
    # log after the fallback (journalctl -b -1). One fixed machine id (the journal's
    # directory name) for both slots; a product makes its own at first boot.
    journal = tree / "var" / "log" / "journal"
    shutil.rmtree(journal, ignore_errors=True)
    journal.symlink_to(JOURNAL)
    (tree / "etc" / "machine-id").write_text(MACHINE_ID + "\n")
    _install(GUESTFS / "journald.conf", tree, "/etc/systemd/journald.conf.d/redstone-test.conf")
    flush = "/etc/systemd/system/systemd-journal-flush.service.d/redstone-test.conf"
    _install(GUESTFS / "journal-flush.conf", tree, flush)


def _finish(tree: Path, kmods: Path) -> None:
    (release,) = (path.name for path in kmods.iterdir())
    modules = tree / "usr" / "lib" / "modules" / release
    shutil.copytree(kmods / release, modules)
    _chroot(tree, "depmod", release)
    _chroot(tree, "systemctl", "enable", *ENABLED)
    _chroot(tree, "systemctl", "mask", *MASKED)
    (tree / "etc" / "hostname").write_text("vehicle\n")
    (tree / "etc" / "redstone-release").write_text(f"version={FACTORY_VERSION}\n")
    (tree / "var" / "lib" / "redstone").mkdir(parents=True, exist_ok=True)


def guest_gid(image_dir: Path, group: str) -> int:
    """The gid of ``group`` in the image."""
    for line in (image_dir / "group").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == group:
            return int(fields[2])
    raise KeyError(group)


def guest_uid(image_dir: Path, user: str) -> int:
    """The uid/gid ``systemd-sysusers`` gave ``user`` in the image (for provisioning files)."""
    for line in (image_dir / "passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2])
    raise KeyError(user)


@dataclass(frozen=True)
class Flavour:
    """What differs between the amd64 vehicle image and a foreign one (arm64.py)."""

    arch: str
    kind: str
    """Cache kind of the image entry."""
    size: int
    """Bytes of ``rootfs.ext4``."""
    finish: Callable[[Path, Path], None]
    """``finish(tree, out)`` after the agent, units and test files are in the tree."""
    inputs: tuple[str | Path, ...] = ()
    """What else the entry's key covers (the flavour's own code and files)."""


def build_image() -> Path:
    """The cached directory holding ``rootfs.ext4`` (version 1) and the image's ``passwd``."""
    kmods = build_kmods()

    def finish(tree: Path, _out: Path) -> None:
        _finish(tree, kmods)

    return build_flavour(Flavour(HOST_ARCH, "vimage", IMAGE_SIZE, finish, (kmods.parent.name,)))


def build_flavour(flavour: Flavour) -> Path:
    """The cached image entry of ``flavour`` (see :func:`build_image`)."""
    base = build_base(flavour.arch)
    wheelhouse = dependency_wheelhouse(flavour.arch)
    with tempfile.TemporaryDirectory(prefix="redstone-wheel-") as tmp:
        project, wheel_digest = _project_wheel(Path(tmp))
        inputs: list[str | bytes | Path] = [
            base.parent.name,
            *flavour.inputs,
            wheelhouse.parent.name,
            wheel_digest,
            Path(__file__).resolve(),
            *sorted(GUESTFS.iterdir()),
            *sorted(SYSTEMD.rglob("*.service")),
            *sorted(SYSTEMD.rglob("*.conf")),
            *(REPO / "etc" / "redstone" / config for config in CONFIGS),
            REPO / "etc" / "u-boot" / "fw_env.config.qemu",
            REPO / "etc" / "u-boot" / "qemu-x86.env",
        ]

        def build(out: Path) -> None:
            tree = out / "tree"
            run(["cp", "-a", f"{base}/.", tree])
            wheels = out / "wheels"
            shutil.copytree(wheelhouse, wheels)
            shutil.copy(project, wheels / project.name)
            # The host's strip reads only its own architecture's ELF files.
            _install_agent(tree, wheels, strip=flavour.arch == HOST_ARCH)
            shutil.rmtree(wheels)
            _install_systemd_files(tree)
            _install_test_files(tree)
            flavour.finish(tree, out)
            shutil.copy(tree / "etc" / "passwd", out / "passwd")
            shutil.copy(tree / "etc" / "group", out / "group")
            make_ext4(tree, out / IMAGE, f"redstone-{FACTORY_VERSION}", flavour.size)
            shutil.rmtree(tree)

        return cached(flavour.kind, input_key(inputs), build)


def make_ext4(tree: Path, image: Path, label: str, size: int = IMAGE_SIZE) -> None:
    """An ext4 image of ``size`` bytes holding ``tree`` (no mount needed)."""
    with image.open("wb") as handle:
        handle.truncate(size)
    # No journal: the slot is mounted read-only, and a journal's superblock is
    # rewritten in memory at mount, so the Sub reading /dev/vdaN (the delta source,
    # the running image's hash) would see other bytes than were installed.
    run(
        ["mkfs.ext4", "-q", "-F", "-O", "^has_journal", "-L", label, "-E", "root_owner=0:0"]
        + ["-b", "4096", "-N", "32768"]  # 1 KiB blocks and 98304 inodes took 30 MiB
        + ["-d", str(tree), str(image)]
    )


_WHEEL: dict[str, bytes] = {}
"""This process's project wheel: file name -> bytes. A test module asks for the image
twice (the disk template, then its own key) and the aarch64 smoke for its own flavour;
the checkout does not change under one test run, and ``pip wheel`` took 7 s (more on a
loaded machine) each time."""


def _project_wheel(directory: Path) -> tuple[Path, str]:
    """The project wheel, written into ``directory``, and its content digest (built once
    per process)."""
    if not _WHEEL:
        wheel = build_project_wheel(directory / "build")
        _WHEEL[wheel.name] = wheel.read_bytes()
    ((name, data),) = _WHEEL.items()
    path = directory / name
    path.write_bytes(data)
    return path, _wheel_content_digest(path)


def _wheel_content_digest(wheel: Path) -> str:
    """A wheel's files, hashed by name and content (its zip timestamps change every build)."""
    import zipfile

    digest = hashlib.sha256()
    with zipfile.ZipFile(wheel) as archive:
        for name in sorted(archive.namelist()):
            digest.update(name.encode() + b"\0" + archive.read(name))
    return digest.hexdigest()


def derive(source: Path, output: Path, files: dict[str, bytes]) -> Path:
    """A new release of the slot image: ``source`` with ``files`` (absolute guest path ->
    content, mode 0644, root-owned) replaced or added. ``debugfs -w`` edits a sparse
    copy, so a release costs seconds and no root, and only the blocks it touches
    differ from ``source`` (a block delta between the two is a few KiB)."""
    run(["cp", "--sparse=always", source, output])
    commands: list[str] = []
    with tempfile.TemporaryDirectory(prefix="redstone-derive-") as tmp:
        for number, (path, content) in enumerate(sorted(files.items())):
            local = Path(tmp) / str(number)
            local.write_bytes(content)
            local.chmod(0o644)
            parent = str(Path(path).parent)
            commands += [f"mkdir {parent}", f"rm {path}", f"write {local} {path}"]
        script = Path(tmp) / "commands"
        script.write_text("\n".join(commands) + "\n")
        run(["debugfs", "-w", "-f", script, output])
    for path, content in files.items():
        if run_bytes(["debugfs", "-R", f"cat {path}", output]) != content:
            raise HarnessError(f"debugfs did not write {path} into {output}")
    return output
