"""The host side of the TBox self-update on the vehicle guest (issue 12, item 4).

The guest is a TBox alone: ``redstone-master`` (started by systemd from the rootfs, its
state on the data partition p7) updates its **own** rootfs (``kind = "self"``: /dev/vda2,
/dev/vda3, the env /dev/vda4) and its **boot script** (``kind = "bootloader"``: the raw
copies /dev/vda5, /dev/vda6 and ``redstone_script``). The vehicle has no Sub and no UDS
ECU: the images disable the Sub's units and someipyd (a drop-in ``ConditionPathExists`` on
the Sub's config, which this vehicle does not have), so nothing but the Master touches the
slots.

Releases are made from the cached vehicle image without debootstrap
(:func:`tools.qemu.vehicle.image.derive`: ``debugfs -w`` on a sparse copy):

* ``factory`` (1.0.0): the cached image plus what a TBox image carries — the Master's
  self-update drop-in (``systemd/redstone-master.service.d/self-update.conf``), its
  self-test ``/usr/lib/redstone-tbox/selftest``, the Sub units and someipyd off;
* ``good`` (2.0.0): a new ``/etc/redstone-release``;
* ``unhealthy`` (3.0.0): its self-test fails (the new Master rejects it);
* ``panics`` (4.0.0): the kernel panics before the Master starts (``ExecStartPre=+``
  writes ``c`` to /proc/sysrq-trigger; ``panic=1`` ends the power cycle).

Each release of the rootfs comes with a new boot script: ``etc/u-boot/boot.cmd`` with one
``echo`` line naming its version first, so the console says which copy ran.

The cloud, campaigns and bundles are :mod:`tests.system.vehicle_world` (:class:`World`),
for a vehicle of two ECUs: ``tbox`` (``self``, cloud kind ``primary``: a block delta) and
``boot`` (``bootloader``, cloud kind ``bootloader``: the whole script). The ``good`` bundle
is made against the factory state, the other two against ``good`` committed (the board
the good scenario leaves), each campaign then cancelled. Only those three rootfs deltas
are signed.

Everything is built once per input (:func:`release`, cache kind ``tboxrel``): the
images, the cloud's bundles on a USB stick, and the factory board's disk with the keys
and trust roots of that cloud. A warm run starts no cloud and pays only for its boots;
:mod:`tests.system.offline_release` rebuilds an entry before its metadata expires.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from tools.qemu.board import Board
from tools.qemu.disk import compile_script, write_into
from tools.qemu.layout import SCRIPT_A, VEHICLE
from tools.qemu.run import run
from tools.qemu.vehicle.board import make_stick, write_data_partition
from tools.qemu.vehicle.image import IMAGE, JOURNAL, derive, guest_gid, guest_uid

from redstone_agent.master.topology import EcuKind
from redstone_agent.uptane.keys import save_signer
from redstone_agent.vvehicle.plan import TBOX, EcuPlan, VehiclePlan
from tests.system.offline_release import OfflineRelease, cached_release
from tests.system.vehicle_world import (
    World,
    build_world,
    file_facts,
    guest_master_files,
    offline_master_toml,
    someipyd_json,
)

REPO = Path(__file__).resolve().parents[2]
BOOT = EcuPlan("boot", EcuKind.BOOTLOADER, "master")
PLAN = VehiclePlan(ecus=(TBOX, BOOT), model="qemu-tbox")
FACTORY = "1.0.0"
GOOD = "2.0.0"
UNHEALTHY = "3.0.0"
PANICS = "4.0.0"
ETC = Path("/etc/redstone")
TRUST = ETC / "trust"
STATE = Path("/var/lib/redstone/master")
SELFTEST = "/usr/lib/redstone-tbox/selftest"
TRIES = 1
"""U-Boot boot attempts of a new slot: one trial boot (each costs ~40 s under TCG)."""
DROPIN = REPO / "systemd" / "redstone-master.service.d" / "self-update.conf"
DROPIN_PATH = "/usr/lib/systemd/system/redstone-master.service.d/self-update.conf"
HEALTH_TIMEOUT_S = 10.0
HEALTH_INTERVAL_S = 2.0
"""The new Master's health check on its trial boot. It runs after the Master is active, so
a good image passes its first round; only the unhealthy image waits the whole timeout
(one more wall-clock wait in the longest test stream), still several failed rounds."""

SELFTEST_OK = b"#!/bin/sh\necho 'tbox selftest: ok'\n"
SELFTEST_FAIL = b"#!/bin/sh\necho 'tbox selftest: modem does not answer'\nexit 1\n"
PANIC_DROPIN = (
    b"# Release 4.0.0: the kernel panics before the Master starts.\n"
    b"[Service]\n"
    b"ExecStartPre=+/bin/sh -c 'echo c > /proc/sysrq-trigger'\n"
)
NO_SUB = (
    b"# A TBox without a Sub on its own node.\n[Unit]\nConditionPathExists=/etc/redstone/sub.toml\n"
)
SUB_UNITS = ("redstone-sub.service", "redstone-health.service", "redstone-sub-commit.service")
NO_SOMEIP = (
    b"# A vehicle without Subs: nothing on this node speaks SOME/IP (the Master opens its\n"
    b"# stack only for Sub ECUs), and the daemon cost each boot seconds of the TBox's CPU.\n"
    b"[Unit]\nConditionPathExists=/etc/redstone/sub.toml\n"
)


def _q(value: object) -> str:
    return json.dumps(str(value))


# -- images ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Images:
    """Rootfs and boot-script files of every release, by version."""

    rootfs: dict[str, Path]
    scripts: dict[str, Path]


def _tbox_files(version: str, selftest: bytes) -> dict[str, bytes]:
    files = {
        "/etc/redstone-release": f"version={version}\n".encode(),
        DROPIN_PATH: DROPIN.read_bytes(),
        SELFTEST: selftest,
    }
    for unit in SUB_UNITS:
        files[f"/etc/systemd/system/{unit}.d/tbox-only.conf"] = NO_SUB
    files["/etc/systemd/system/someipyd.service.d/tbox-only.conf"] = NO_SOMEIP
    return files


def boot_script(version: str, output: Path) -> Path:
    """``etc/u-boot/boot.cmd`` compiled with a first line naming ``version``."""
    source = output.with_suffix(".cmd")
    text = (REPO / "etc" / "u-boot" / "boot.cmd").read_text()
    source.write_text(f'echo "redstone: boot script {version}"\n' + text)
    compile_script(source, output, f"redstone {version}")
    return output


def make_images(cached_image: Path, factory_script: Path, workdir: Path) -> Images:
    """Every release's rootfs (``debugfs -w`` edits of the cached image) and boot script.
    ``factory_script`` is the compiled script the disk template holds in p5 and p6."""
    workdir.mkdir(parents=True, exist_ok=True)
    factory = derive(cached_image, workdir / "tbox-1.0.0.ext4", _tbox_files(FACTORY, SELFTEST_OK))
    rootfs = {FACTORY: factory}
    for version, selftest, extra in (
        (GOOD, SELFTEST_OK, {}),
        (UNHEALTHY, SELFTEST_FAIL, {}),
        (
            PANICS,
            SELFTEST_OK,
            {"/etc/systemd/system/redstone-master.service.d/panic.conf": PANIC_DROPIN},
        ),
    ):
        files = {**_tbox_files(version, selftest), **extra}
        rootfs[version] = derive(factory, workdir / f"tbox-{version}.ext4", files)
    for image in rootfs.values():  # derive() writes 0644; the self-test runs
        run(["debugfs", "-w", "-R", f"sif {SELFTEST} mode 0100755", image])
    scripts = {FACTORY: factory_script}
    for version in (GOOD, UNHEALTHY, PANICS):
        scripts[version] = boot_script(version, workdir / f"boot-{version}.scr")
    return Images(rootfs, scripts)


# -- cloud: releases and one bundle per scenario -----------------------------------------------


def _installed(images: Images, version: str, counter: int) -> dict[str, tuple[str, int, str, int]]:
    rootfs, script = images.rootfs[version], images.scripts[version]
    return {
        TBOX.serial: (TBOX.target(version), *file_facts(rootfs), counter),
        BOOT.serial: (BOOT.target(version), *file_facts(script), counter),
    }


COUNTERS = {FACTORY: 1, GOOD: 2, UNHEALTHY: 3, PANICS: 4}


SOURCES = {GOOD: FACTORY, UNHEALTHY: GOOD, PANICS: GOOD}
"""The release each bundle is made against: ``good`` updates a factory board; the
rejected and the panicking image are tried on the board the good update left (GOOD
committed in slot B), so those scenarios need no boot of their own to start."""


def prepare_bundles(world: World, images: Images, workdir: Path) -> dict[str, Path]:
    """One bundle per new release (rootfs + boot script), made against the state in
    :data:`SOURCES` and then cancelled in the cloud; version -> bundle file. Only the
    rootfs deltas of :data:`SOURCES` are signed: the director offers a ``bootloader``
    ECU whole images only."""
    for version, counter in COUNTERS.items():
        world.release(TBOX, version, images.rootfs[version], counter)
        world.release(BOOT, version, images.scripts[version], counter)
    by_target = {TBOX.target(v): path for v, path in images.rootfs.items()}
    world.sign_deltas(by_target, {(TBOX.target(o), TBOX.target(n)) for n, o in SOURCES.items()})
    bundles: dict[str, Path] = {}
    for version, source in SOURCES.items():
        world.report(_installed(images, source, COUNTERS[source]))
        name = world.campaign([TBOX.target(version), BOOT.target(version)])
        output = workdir / Release.bundle_name(version)
        summary = world.bundle(name, output)
        # A full 288 MiB rootfs would not fit the Master's cache: a block delta only.
        assert output.stat().st_size < 16 << 20, summary
        with world.operator() as op:
            op.call("POST", f"/api/v1/campaigns/{name}/cancel", json={"reason": "bundled"})
        bundles[version] = output
    return bundles


# -- the guest's factory provisioning (data partition) ----------------------------------------


def self_table() -> str:
    """``[master.self]``: the board's slots and env, its health check."""
    return (
        "\n[master.self]\n"
        # What the self-update drop-in allows (CAP_KILL): PID 1 reboots on SIGRTMIN+5.
        'reboot-command = ["/bin/sh", "-c", "kill -s RTMIN+5 1"]\n'
        "[master.self.slots]\n"
        f"tries = {TRIES}\n"
        f"state-dir = {_q(STATE)}\n"
        'A = { device = "/dev/vda2" }\n'
        'B = { device = "/dev/vda3" }\n'
        "[master.self.slots.bootloader]\n"
        'backend = "uboot"\n'
        "[master.self.slots.bootloader.uboot]\n"
        'fw-env-config = "/etc/fw_env.config"\n'
        'defaults = "/etc/u-boot-initial-env"\n'
        "[master.self.health]\n"
        'units = ["redstone-master.service"]\n'
        "cloud = false\n"  # the guest is offline: bundles only
        "ecus = true\n"
        f"command = {json.dumps([SELFTEST])}\n"
        f"timeout-s = {HEALTH_TIMEOUT_S}\n"
        f"interval-s = {HEALTH_INTERVAL_S}\n"
    )


def guest_master_toml() -> str:
    files = guest_master_files()
    assert files.state_dir == STATE
    text = offline_master_toml(PLAN, files)
    # master_toml writes the ECUs' common keys; the TBox tier's own keys follow.
    tbox = f"serial = {_q(TBOX.serial)}\n"
    text = text.replace(tbox, tbox + f"installed-target = {_q(TBOX.target(FACTORY))}\n")
    text += (
        f"installed-target = {_q(BOOT.target(FACTORY))}\n"
        "[master.ecus.bootscript]\n"
        'A = "/dev/vda5"\n'
        'B = "/dev/vda6"\n'
        'fw-env-config = "/etc/fw_env.config"\n'
        f"state-dir = {_q(STATE)}\n"
        "require-redundant-env = false\n"  # the QEMU board's env is single-copy
    )
    assert text.rstrip().endswith("require-redundant-env = false")
    return text + self_table()


def factory_tree(world: World, tree: Path, image_dir: Path) -> Path:
    """The data partition: ``factory/etc-redstone`` (bound on /etc/redstone), the Master's
    state directory and the journal directory."""
    etc = tree / "factory" / "etc-redstone"
    trust = etc / "trust"
    trust.mkdir(parents=True)
    (etc / "master.toml").write_text(guest_master_toml())
    (etc / "someipyd.json").write_text(someipyd_json())
    (trust / "director.root.json").write_bytes(world.director_root)
    (trust / "image.root.json").write_bytes(world.repo.root.read_bytes())
    (trust / "cloud-ca.pem").write_bytes(world.cloud.ca.read_bytes())
    (trust / "client.pem").write_bytes(world.client_cert.read_bytes())
    save_signer(world.signers["tbox"], trust / "tbox.pem")
    (trust / "client.key").write_bytes(world.client_key.read_bytes())
    master = guest_uid(image_dir, "redstone-master")
    for name in ("tbox.pem", "client.key"):
        (trust / name).chmod(0o600)
        os.chown(trust / name, master, master)
    journal = tree / Path(JOURNAL).name
    journal.mkdir()
    os.chown(journal, 0, guest_gid(image_dir, "systemd-journal"))
    journal.chmod(0o2755)
    return tree


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def read_partition(disk: Path, offset: int, length: int) -> bytes:
    with disk.open("rb") as handle:
        handle.seek(offset)
        return handle.read(length)


# -- everything the scenarios need, built once and cached --------------------------------------

RELEASE_KIND = "tboxrel"
STICK_MIB = 64


@dataclass(frozen=True)
class Release(OfflineRelease):
    """One cache entry (``tboxrel-<key>``): the factory board's disk (the vehicle template,
    the factory TBox image in slot A, the env provisioned for A, the data partition with
    this world's keys and trust roots), the USB stick holding the bundles, and every
    release's compiled boot script. The cloud that signed them is gone: the guest is
    offline, and a warm run pays only for its boots."""

    def script(self, version: str) -> Path:
        return self.directory / f"boot-{version}.scr"

    @staticmethod
    def bundle_name(version: str) -> str:
        return f"tbox-{version}.rsbundle"


def factory_script(template: Path, output: Path) -> Path:
    """The compiled boot script the template wrote into p5 (mkimage header + data)."""
    header = read_partition(template, SCRIPT_A.offset, 64)
    length = 64 + int.from_bytes(header[12:16], "big")
    output.write_bytes(read_partition(template, SCRIPT_A.offset, length))
    return output


def release(template: Path, image_dir: Path) -> Release:
    """The cached :class:`Release` for this disk template and vehicle image, keyed by
    them and by the code and files that make it (the cloud's and the agent's code are in
    the image's key: its wheel)."""
    here = Path(__file__).resolve()
    inputs: list[str | Path] = [
        template.parent.name,
        image_dir.name,
        here,
        here.with_name("vehicle_world.py"),
        DROPIN,
        REPO / "etc" / "u-boot" / "boot.cmd",
    ]

    def build(work: Path, out: Path) -> list[Path]:
        return _build_release(template, image_dir, work, Release(out))

    return Release(cached_release(RELEASE_KIND, inputs, build))


def _build_release(template: Path, image_dir: Path, work: Path, made: Release) -> list[Path]:
    script = factory_script(template, work / "boot-factory.scr")
    images = make_images(image_dir / IMAGE, script, work / "images")
    for version, script in images.scripts.items():
        shutil.copy(script, made.script(version))
    stick = work / "stick"
    stick.mkdir()
    world = build_world(work / "world", PLAN)
    try:
        bundles = prepare_bundles(world, images, stick)
        tree = factory_tree(world, work / "data", image_dir)
    finally:
        world.close()
    make_stick(made.stick, stick, STICK_MIB)
    board = Board.create(work / "board", template)
    board.provision("A")
    write_into(board.disk, VEHICLE.slot_a, images.rootfs[FACTORY])
    write_data_partition(board, tree)
    board.disk.rename(made.disk)
    return list(bundles.values())
