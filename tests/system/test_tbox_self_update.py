"""The TBox updates itself on real U-Boot and systemd (issue 12, item 4).

The vehicle guest (tools/qemu/vehicle) is the TBox: ``redstone-master`` started by systemd
from the rootfs, its state on p7 (``/var/lib/redstone``), the self-update drop-in of
``systemd/redstone-master.service.d`` in the image. A campaign from an offline bundle
(``redstonectl install``) updates its rootfs (``kind = "self"``: /dev/vda2, /dev/vda3, the
env /dev/vda4) and its boot script (``kind = "bootloader"``: /dev/vda5, /dev/vda6,
``redstone_script``). Images and bundles: tests/system/tbox_world.py. Each scenario has its
own board copied from the factory state; one QEMU run is one power cycle.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tools.qemu.board import Board
from tools.qemu.console import BootRecord
from tools.qemu.disk import write_into
from tools.qemu.layout import SCRIPT_A, VEHICLE
from tools.qemu.machine import missing_requirements
from tools.qemu.vehicle.base import missing_root
from tools.qemu.vehicle.board import (
    make_stick,
    power_on,
    vehicle_disk_template,
    write_data_partition,
)
from tools.qemu.vehicle.guest import Guest, GuestError
from tools.qemu.vehicle.image import IMAGE, build_image

from redstone_agent.vvehicle.plan import TBOX
from tests.system.tbox_world import (
    BOOT,
    FACTORY,
    GOOD,
    PANICS,
    UNHEALTHY,
    Images,
    build_tbox_world,
    factory_tree,
    make_images,
    prepare_bundles,
    read_partition,
)

pytestmark = [
    pytest.mark.system,
    pytest.mark.slow,
    pytest.mark.timeout(1800),
    # Found by this test (first run, 2026-11-30): the director offers the boot script as
    # a delta (boot-N.from-<sha>.rsdelta, 272 bytes) and BootloaderPort.install hands the
    # delta file to BootScriptStore.install as if it were the script ("...: 272 bytes,
    # expected 3863"): the campaign fails before the reboot and rolls back. Every
    # scenario installs a bundle carrying such a delta.
    pytest.mark.xfail(
        strict=True,
        reason="product bug: src/redstone_agent/master/ecu_bootloader.py install() ignores "
        "job.delta and writes the delta file as the boot script",
    ),
]

BOOT_S = 300.0
STICK = "/media/stick"
CAMPAIGN = "/var/lib/redstone/master/campaign.json"
BOOTSCRIPT_JOURNAL = "/var/lib/redstone/master/bootscript-redstone_script.json"
TIMINGS: dict[str, float] = {}


@dataclass
class Setup:
    template: Path
    image_dir: Path
    images: Images
    bundles: dict[str, Path]
    stick: Path
    data: dict[str, Path] = field(default_factory=dict)
    workdir: Path = Path()


def _factory_script(template: Path, output: Path) -> Path:
    """The compiled boot script the template wrote into p5 (mkimage header + data)."""
    header = read_partition(template, SCRIPT_A.offset, 64)
    length = 64 + int.from_bytes(header[12:16], "big")
    output.write_bytes(read_partition(template, SCRIPT_A.offset, length))
    return output


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    reason = missing_requirements() or missing_root()
    if reason is not None:
        pytest.skip(f"vehicle guest cannot run: {reason}")
    started = time.monotonic()
    template = vehicle_disk_template()
    image_dir = build_image()
    TIMINGS["artifacts_s"] = time.monotonic() - started
    workdir = tmp_path_factory.mktemp("tbox")
    factory_script = _factory_script(template, workdir / "boot-1.0.0.scr")
    images = make_images(image_dir / IMAGE, factory_script, workdir / "images")
    TIMINGS["images_s"] = time.monotonic() - started - TIMINGS["artifacts_s"]
    world = build_tbox_world(workdir / "world")
    try:
        mark = time.monotonic()
        bundles = prepare_bundles(world, images, workdir)
        TIMINGS["cloud_and_bundles_s"] = time.monotonic() - mark
        made = Setup(template, image_dir, images, bundles, Path(), workdir=workdir)
        stick_dir = workdir / "stick"
        stick_dir.mkdir()
        for bundle in bundles.values():
            subprocess.run(["cp", bundle, stick_dir / bundle.name], check=True)
        made.stick = make_stick(workdir / "stick.img", stick_dir, 64)
        made.data["tree"] = factory_tree(world, workdir / "data", image_dir)
        yield made
    finally:
        world.close()
        TIMINGS["module_total_s"] = time.monotonic() - started
        print(f"tbox self-update timings: {json.dumps(TIMINGS)}")


class Tbox:
    """One board of a scenario and the guest of its current power cycle."""

    def __init__(self, setup: Setup, name: str) -> None:
        self.setup = setup
        self.board = Board.create(setup.workdir / name, setup.template)
        self.board.provision("A")
        write_into(self.board.disk, VEHICLE.slot_a, setup.images.rootfs[FACTORY])
        write_data_partition(self.board, setup.data["tree"])
        self.guest: Guest | None = None
        self.started = time.monotonic()

    def power_on(self) -> Guest:
        self.kill()
        self.guest = power_on(self.board, (self.setup.stick,))
        return self.guest

    def ready(self) -> Guest:
        guest = self.power_on()
        TIMINGS[f"{self.board.workdir.name}_boot{self.board.boots}_to_channel_s"] = (
            guest.wait_ready(BOOT_S)
        )
        guest.check(f"mount -o ro /dev/vdb {STICK}")
        return guest

    def kill(self) -> None:
        if self.guest is not None:
            self.guest.kill()

    def install(self, version: str) -> None:
        assert self.guest is not None
        name = self.setup.bundles[version].name
        answer = self.guest.run(f"redstonectl install --no-wait {STICK}/{name}")
        assert answer.ok, answer.out


@pytest.fixture
def tbox_factory(setup: Setup) -> Iterator[list[Tbox]]:
    made: list[Tbox] = []
    yield made
    for tbox in made:
        tbox.kill()


def _campaign(guest: Guest) -> dict[str, Any]:
    result = guest.run(f"cat {CAMPAIGN}")
    if not result.ok:
        return {}
    record = json.loads(result.out)["state"]
    assert isinstance(record, dict)
    return record


def _until_reboot(guest: Guest, timeout: float) -> BootRecord:
    """Follow the campaign until the guest ends its power cycle itself."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            record = _campaign(guest)
        except GuestError:
            break
        if record.get("state") == "failed":
            raise AssertionError(f"campaign failed before the reboot: {json.dumps(record)}")
        time.sleep(3)
    ended = guest.wait_end(max(deadline - time.monotonic(), 60))
    assert ended.ending != "timeout", ended.text[-3000:]
    return ended


def _wait_end(guest: Guest, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        record = _campaign(guest)
        if record.get("state") in ("done", "failed"):
            return record
        if time.monotonic() > deadline:
            log = guest.run("journalctl -b -o cat -u redstone-master --no-pager | tail -40").out
            raise AssertionError(f"campaign did not end within {timeout:g} s: {record}\n{log}")
        time.sleep(3)


def _active(guest: Guest, unit: str, timeout: float = 180.0) -> bool:
    """Whether ``unit`` is active once it is no longer activating (or at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        state = guest.run(f"systemctl show -P ActiveState {unit}").out.strip()
        if state != "activating" or time.monotonic() > deadline:
            return state == "active"
        time.sleep(2)


def _env(guest: Guest) -> dict[str, str]:
    out = guest.check("fw_printenv")
    return dict(line.split("=", 1) for line in out.splitlines() if line.startswith("redstone_"))


def _copy_sha(guest: Guest, device: str, length: int) -> str:
    return guest.check(f"head -c {length} {device} | sha256sum").split()[0]


def _master_log(guest: Guest, boot: str = "") -> str:
    return guest.run(f"journalctl {boot} -o cat -u redstone-master --no-pager").out


def _file_sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- 1. good update: committed by the new Master after the TBox's reboot ----------------------


def test_good_update_commits_rootfs_and_boot_script_after_the_reboot(
    setup: Setup, tbox_factory: list[Tbox]
) -> None:
    tbox = Tbox(setup, "good")
    tbox_factory.append(tbox)
    guest = tbox.ready()
    assert guest.check("cat /etc/redstone-release").strip() == f"version={FACTORY}"
    assert _active(guest, "redstone-master.service"), _master_log(guest)[-3000:]
    before = _env(guest)
    assert before.get("redstone_script", "A") == "A", before

    tbox.install(GOOD)
    ended = _until_reboot(guest, 900)
    TIMINGS["good_install_until_reboot_s"] = time.monotonic() - tbox.started
    assert "reboot" in ended.text.lower(), ended.text[-3000:]

    guest = tbox.ready()
    record = guest.record()
    assert f"redstone: boot script {GOOD}" in record.text, record.script_lines
    assert record.uboot_slot == "B", record.script_lines
    assert "redstone.slot=B" in guest.check("cat /proc/cmdline")
    assert guest.check("cat /etc/redstone-release").strip() == f"version={GOOD}"
    status = _wait_end(guest, 300)
    TIMINGS["good_total_s"] = time.monotonic() - tbox.started

    assert status["state"] == "done", status
    rows = status["ecus"]
    assert rows[TBOX.serial]["new"] == TBOX.target(GOOD), rows
    assert rows[BOOT.serial]["new"] == BOOT.target(GOOD), rows
    env = _env(guest)
    assert (env["redstone_B_ok"], env["redstone_B_tries"], env["redstone_order"]) == (
        "1",
        "0",
        "B A",
    ), env
    assert env["redstone_script"] == "B", env
    script = setup.images.scripts[GOOD]
    assert _copy_sha(guest, "/dev/vda6", script.stat().st_size) == _file_sha(script)
    factory = setup.images.scripts[FACTORY]
    assert _copy_sha(guest, "/dev/vda5", factory.stat().st_size) == _file_sha(factory)
    # The commit was the new Master's, after its health check on the new slot.
    log = _master_log(guest)
    assert "tbox selftest: ok" in log or "health" in log.lower(), log[-3000:]
    shown = json.loads(guest.check("redstonectl status --json"))
    assert shown["state"] == "done", shown
    # Least privilege: the Master ran as its own user, with CAP_SYS_BOOT only.
    props = guest.check(
        "systemctl show -P User -P CapabilityBoundingSet -P SupplementaryGroups redstone-master"
    )
    assert "redstone-master" in props and "cap_sys_boot" in props and "disk" in props, props


# -- 2. the new image fails its health check: rejected, old slot, all-old ----------------------


def test_unhealthy_image_is_rejected_and_the_old_master_reports_all_old(
    setup: Setup, tbox_factory: list[Tbox]
) -> None:
    tbox = Tbox(setup, "unhealthy")
    tbox_factory.append(tbox)
    guest = tbox.ready()
    tbox.install(UNHEALTHY)
    _until_reboot(guest, 900)

    trial = tbox.power_on().wait_end(600)  # the new Master rejects its image and reboots
    assert trial.ending != "timeout", trial.text[-3000:]
    assert f"redstone: boot script {UNHEALTHY}" in trial.text
    assert trial.uboot_slot == "B", trial.script_lines

    guest = tbox.ready()
    record = guest.record()
    assert record.uboot_slot == "A", record.script_lines
    assert guest.check("cat /etc/redstone-release").strip() == f"version={FACTORY}"
    status = _wait_end(guest, 300)
    TIMINGS["unhealthy_total_s"] = time.monotonic() - tbox.started

    assert status["state"] == "failed", status
    text = json.dumps(status)
    assert "modem does not answer" in text, text
    rows = status["ecus"]
    assert rows[TBOX.serial]["outcome"] in ("rolled-back", "rolled_back"), rows
    assert rows[BOOT.serial]["outcome"] in ("rolled-back", "rolled_back"), rows
    env = _env(guest)
    assert env.get("redstone_script", "A") == "A", env
    assert env["redstone_order"].startswith("A") and env["redstone_B_ok"] == "0", env
    # The trial boot's journal: the new Master's own verdict.
    trial_log = _master_log(guest, "-b -1")
    assert "modem does not answer" in trial_log, trial_log[-3000:]


# -- 3. kernel panic in the new image: U-Boot spends the tries, the old Master reports -------


def test_kernel_panic_in_the_new_image_falls_back_and_reports_all_old(
    setup: Setup, tbox_factory: list[Tbox]
) -> None:
    tbox = Tbox(setup, "panic")
    tbox_factory.append(tbox)
    guest = tbox.ready()
    tbox.install(PANICS)
    _until_reboot(guest, 900)

    trial = tbox.power_on().wait_end(600)
    assert trial.panicked, trial.text[-3000:]
    assert trial.uboot_slot == "B", trial.script_lines

    guest = tbox.ready()
    assert guest.record().uboot_slot == "A"
    assert guest.check("cat /etc/redstone-release").strip() == f"version={FACTORY}"
    status = _wait_end(guest, 300)
    TIMINGS["panic_total_s"] = time.monotonic() - tbox.started

    assert status["state"] == "failed", status
    assert "tries" in json.dumps(status) or "trial" in json.dumps(status), status
    env = _env(guest)
    assert env.get("redstone_script", "A") == "A", env
    assert env["redstone_order"].startswith("A") and env["redstone_B_ok"] == "0", env


# -- 4. power cut (QEMU killed) at three points of the boot-script update ----------------------

# Each watcher runs in the guest (root, test only) and freezes the Master (SIGSTOP) the
# moment its condition holds, then says so in /run/tbox-cut: the host pulls the power with
# the Master stopped exactly there (whatever it wrote meanwhile may still be in the page
# cache: a cut loses it, as on a car).
CUTS = {
    "writing": f"grep -q writing {BOOTSCRIPT_JOURNAL} 2>/dev/null",
    "switched": 'test "$(fw_printenv -n redstone_script 2>/dev/null)" = B',
    "trial": f"grep -q tbox-trial {CAMPAIGN} 2>/dev/null",
}


def _arm(guest: Guest, point: str) -> None:
    condition = CUTS[point]
    script = (
        f"until {condition}; do sleep 0.05; done; "
        "kill -STOP $(systemctl show -P MainPID redstone-master); "
        f"echo {point} > /run/tbox-cut"
    )
    guest.check(f"systemd-run --unit=tbox-cut --no-block /bin/sh -c {json.dumps(script)}")


def _cut_when_frozen(tbox: Tbox, guest: Guest, point: str, timeout: float = 600) -> BootRecord:
    deadline = time.monotonic() + timeout
    while guest.run("cat /run/tbox-cut").out.strip() != point:
        state = _campaign(guest).get("state")
        assert state not in ("done", "failed"), f"{point}: campaign ended first ({state})"
        assert time.monotonic() < deadline, f"{point}: never reached"
        time.sleep(0.5)
    tbox.kill()  # the power cut
    assert tbox.guest is not None
    return tbox.guest.record()


def test_power_cuts_during_the_boot_script_update_still_boot_and_converge(
    setup: Setup, tbox_factory: list[Tbox]
) -> None:
    tbox = Tbox(setup, "cuts")
    tbox_factory.append(tbox)
    guest = tbox.ready()
    _arm(guest, "writing")
    tbox.install(GOOD)
    _cut_when_frozen(tbox, guest, "writing")

    # The new copy may be torn; the old one is selected and runs.
    guest = tbox.ready()
    record = guest.record()
    assert "board: running boot script copy A (selected)" in record.text, record.script_lines
    assert f"redstone: boot script {GOOD}" not in record.text
    assert guest.check("cat /etc/redstone-release").strip() == f"version={FACTORY}"
    _arm(guest, "switched")  # the Master resumes updating-tbox by itself
    _cut_when_frozen(tbox, guest, "switched")

    # Switched: the new script runs; the rootfs slot is not primed yet, so slot A.
    guest = tbox.ready()
    record = guest.record()
    assert f"redstone: boot script {GOOD}" in record.text, record.script_lines
    _arm(guest, "trial")
    _cut_when_frozen(tbox, guest, "trial")

    # A cut before the planned reboot is an early trial boot of the new slot.
    guest = tbox.ready()
    record = guest.record()
    assert f"redstone: boot script {GOOD}" in record.text, record.script_lines
    assert record.uboot_slot == "B", record.script_lines
    status = _wait_end(guest, 300)
    TIMINGS["cuts_total_s"] = time.monotonic() - tbox.started
    assert status["state"] == "done", status
    env = _env(guest)
    assert (env["redstone_script"], env["redstone_order"], env["redstone_B_ok"]) == (
        "B",
        "B A",
        "1",
    ), env
    assert guest.check("cat /etc/redstone-release").strip() == f"version={GOOD}"
    script = setup.images.scripts[GOOD]
    assert _copy_sha(guest, "/dev/vda6", script.stat().st_size) == _file_sha(script)
