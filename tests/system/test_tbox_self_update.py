"""The TBox updates itself on real U-Boot and systemd (issue 12, item 4).

The vehicle guest (tools/qemu/vehicle) is the TBox: ``redstone-master`` started by systemd
from the rootfs, its state on p7 (``/var/lib/redstone``), the self-update drop-in of
``systemd/redstone-master.service.d`` in the image. A campaign from an offline bundle
(``redstonectl install``) updates its rootfs (``kind = "self"``: /dev/vda2, /dev/vda3, the
env /dev/vda4) and its boot script (``kind = "bootloader"``: /dev/vda5, /dev/vda6,
``redstone_script``). Images, bundles and the factory disk: tests/system/tbox_world.py
(cached). The good update, the rejected image and the kernel panic share one board (each
ends where the next starts: GOOD committed in slot B); the power cuts have their own
factory board. One QEMU run is one power cycle.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tools.qemu.board import Board
from tools.qemu.console import BootRecord
from tools.qemu.machine import missing_requirements
from tools.qemu.run import run
from tools.qemu.vehicle.base import missing_root
from tools.qemu.vehicle.board import power_on, vehicle_disk_template
from tools.qemu.vehicle.guest import Guest, GuestError
from tools.qemu.vehicle.image import build_image

from redstone_agent.vvehicle.plan import TBOX
from tests.system.tbox_world import BOOT, FACTORY, GOOD, PANICS, UNHEALTHY, Release, release

pytestmark = [
    pytest.mark.system,
    pytest.mark.slow,
    pytest.mark.timeout(1800),
]

BOOT_S = 300.0
STICK = "/media/stick"
INSTALL_CALL_S = 300.0
"""Guard on ``redstonectl install --no-wait``: the Master verifies the bundle's metadata
before it answers, which under TCG on a loaded CI machine took more than a minute."""
CAMPAIGN = "/var/lib/redstone/master/campaign.json"
BOOTSCRIPT_JOURNAL = "/var/lib/redstone/master/bootscript-redstone_script.json"
TIMINGS: dict[str, float] = {}


@dataclass
class Setup:
    release: Release
    workdir: Path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    reason = missing_requirements() or missing_root()
    if reason is not None:
        pytest.skip(f"vehicle guest cannot run: {reason}")
    started = time.monotonic()
    template = vehicle_disk_template()
    image_dir = build_image()
    TIMINGS["artifacts_s"] = time.monotonic() - started
    made = release(template, image_dir)  # cached: images, cloud, bundles, factory disk
    TIMINGS["release_s"] = time.monotonic() - started - TIMINGS["artifacts_s"]
    try:
        yield Setup(made, tmp_path_factory.mktemp("tbox"))
    finally:
        TIMINGS["module_total_s"] = time.monotonic() - started
        print(f"tbox self-update timings: {json.dumps(TIMINGS)}")


class Tbox:
    """One board of a scenario and the guest of its current power cycle."""

    def __init__(self, setup: Setup, name: str) -> None:
        self.setup = setup
        self.board = Board.create(setup.workdir / name, setup.release.disk)
        # Its own stick: QEMU locks a writable image, and a guest must not touch the cache.
        self.stick = self.board.workdir / "stick.img"
        run(["cp", "--sparse=always", setup.release.stick, self.stick])
        self.guest: Guest | None = None
        self.started = time.monotonic()

    def power_on(self) -> Guest:
        self.kill()
        self.guest = power_on(self.board, (self.stick,))
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
        _master_active(self.guest)
        name = Release.bundle_name(version)
        answer = self.guest.run(f"redstonectl install --no-wait {STICK}/{name}", INSTALL_CALL_S)
        assert answer.ok, answer.out


def _master_active(guest: Guest, timeout: float = 180.0) -> None:
    """Wait until systemd has the Master active (READY sent): the console channel comes up
    first, so an install asked at once can find no Master on the bus yet."""
    deadline = time.monotonic() + timeout
    while (state := guest.run("systemctl show -P ActiveState redstone-master").out.strip()) in (
        "activating",
        "inactive",
    ) and time.monotonic() < deadline:
        time.sleep(1)
    assert state == "active", guest.run("systemctl status --no-pager redstone-master").out


@pytest.fixture
def tbox_factory(setup: Setup) -> Iterator[list[Tbox]]:
    made: list[Tbox] = []
    yield made
    for tbox in made:
        tbox.kill()


class Chain:
    """The board the good update leaves running (GOOD committed in slot B, script copy B)
    is where the rejected and the panicking image are tried: each ends all-old, which is
    that same state again. A scenario takes the board and gives it back only when it
    passed; after a failure the rest of the chain is skipped (the failure is reported)."""

    def __init__(self) -> None:
        self.board: Tbox | None = None
        self.broken = ""
        self.boards: list[Tbox] = []

    def take(self) -> Tbox:
        if self.board is None:
            pytest.skip(self.broken or "the good update scenario did not run first")
        board, self.board = self.board, None
        self.broken = "the previous scenario of the chain failed and left its board"
        return board

    def start(self, board: Tbox, broken: str) -> None:
        self.boards.append(board)
        self.broken = broken

    def give(self, board: Tbox) -> None:
        self.board = board


@pytest.fixture(scope="module")
def chain_state(setup: Setup) -> Iterator[Chain]:
    made = Chain()
    yield made
    for tbox in made.boards:
        tbox.kill()


@pytest.fixture
def chain(chain_state: Chain) -> Iterator[Chain]:
    yield chain_state
    for tbox in chain_state.boards:
        if tbox is not chain_state.board:  # not handed on: its QEMU must not run beside
            tbox.kill()  # the next scenario's


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
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _selected(copy: str) -> str:
    """The board script's line for a boot script copy it ran because the env selects it."""
    return f"board: running boot script copy {copy} (selected)"


def _release_of(guest: Guest) -> str:
    return guest.check("cat /etc/redstone-release").strip().removeprefix("version=")


# -- 1. good update: committed by the new Master after the TBox's reboot ----------------------


def test_good_update_commits_rootfs_and_boot_script_after_the_reboot(
    setup: Setup, chain: Chain
) -> None:
    tbox = Tbox(setup, "chain")
    chain.start(tbox, "the good update scenario failed")
    guest = tbox.ready()
    first = guest.record()
    assert _selected("A") in first.text, first.script_lines
    assert first.uboot_slot == "A", first.script_lines
    assert _release_of(guest) == FACTORY
    assert _active(guest, "redstone-master.service"), _master_log(guest)[-3000:]
    before = _env(guest)
    assert before.get("redstone_script", "A") == "A", before

    tbox.install(GOOD)
    ended = _until_reboot(guest, 900)
    TIMINGS["good_install_until_reboot_s"] = time.monotonic() - tbox.started
    assert "reboot" in ended.text.lower(), ended.text[-3000:]

    guest = tbox.ready()
    record = guest.record()
    assert _selected("B") in record.text, record.script_lines
    assert f"redstone: boot script {GOOD}" in record.text, record.script_lines
    assert record.uboot_slot == "B", record.script_lines
    assert "redstone.slot=B" in guest.check("cat /proc/cmdline")
    assert _release_of(guest) == GOOD
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
    _assert_copies(guest, setup.release, a=FACTORY, b=GOOD)
    # The commit was the new Master's, after its health check on the new slot.
    log = _master_log(guest)
    assert "tbox selftest: ok" in log or "health" in log.lower(), log[-3000:]
    shown = json.loads(guest.check("redstonectl status --json"))
    assert shown["state"] == "done", shown
    # Least privilege: the Master ran as its own user with CAP_KILL only (its reboot).
    show = "systemctl show -P {} redstone-master"
    user, caps, groups = (
        guest.check(show.format(name)).strip()
        for name in ("User", "CapabilityBoundingSet", "SupplementaryGroups")
    )
    assert (user, caps, "disk" in groups.split()) == ("redstone-master", "cap_kill", True), (
        user,
        caps,
        groups,
    )
    chain.give(tbox)  # GOOD committed in slot B, script copy B: the next scenarios start here


def _assert_copies(guest: Guest, release: Release, *, a: str, b: str) -> None:
    """Boot script copy A (/dev/vda5) holds release ``a``'s script, copy B (vda6) ``b``'s."""
    for device, version in (("/dev/vda5", a), ("/dev/vda6", b)):
        script = release.script(version)
        assert _copy_sha(guest, device, script.stat().st_size) == _file_sha(script), (
            f"{device} does not hold the {version} boot script"
        )


def _assert_all_old(tbox: Tbox, guest: Guest, status: dict[str, Any], version: str) -> None:
    """The campaign to ``version`` failed and every ECU went back to GOOD (slot B, copy B)."""
    assert status["state"] == "failed", status
    rows = status["ecus"]
    assert rows[TBOX.serial]["new"] == TBOX.target(version), rows
    assert rows[TBOX.serial]["outcome"] in ("rolled-back", "rolled_back"), rows
    assert rows[BOOT.serial]["outcome"] in ("rolled-back", "rolled_back"), rows
    env = _env(guest)
    assert env["redstone_script"] == "B", env
    assert env["redstone_order"].startswith("B") and env["redstone_A_ok"] == "0", env
    assert _release_of(guest) == GOOD
    assert "redstone.slot=B" in guest.check("cat /proc/cmdline")
    # The new copy stays written but unselected; copy B is the GOOD script.
    _assert_copies(guest, tbox.setup.release, a=version, b=GOOD)
    shown = json.loads(guest.check("redstonectl status --json"))
    assert shown["state"] == "failed", shown


# -- 2. the new image fails its health check: rejected, old slot, all-old ----------------------


def test_unhealthy_image_is_rejected_and_the_old_master_reports_all_old(chain: Chain) -> None:
    tbox = chain.take()  # GOOD committed in slot B: the new image goes into slot A
    started = time.monotonic()
    guest = tbox.guest
    assert guest is not None
    tbox.install(UNHEALTHY)
    _until_reboot(guest, 900)

    trial = tbox.power_on().wait_end(600)  # the new Master rejects its image and reboots
    assert trial.ending != "timeout", trial.text[-3000:]
    assert _selected("A") in trial.text, trial.script_lines
    assert f"redstone: boot script {UNHEALTHY}" in trial.text, trial.script_lines
    assert trial.uboot_slot == "A", trial.script_lines

    guest = tbox.ready()
    record = guest.record()
    # The new Master only marked its slot bad: the new script (still selected) boots B.
    assert _selected("A") in record.text, record.script_lines
    assert f"redstone: boot script {UNHEALTHY}" in record.text, record.script_lines
    assert record.uboot_slot == "B", record.script_lines
    status = _wait_end(guest, 300)
    TIMINGS["unhealthy_total_s"] = time.monotonic() - started

    _assert_all_old(tbox, guest, status, UNHEALTHY)
    assert "modem does not answer" in json.dumps(status), status
    # The trial boot's journal: the new Master's own verdict.
    trial_log = _master_log(guest, "-b -1")
    assert "modem does not answer" in trial_log, trial_log[-3000:]
    chain.give(tbox)


# -- 3. kernel panic in the new image: U-Boot spends the tries, the old Master reports -------


def test_kernel_panic_in_the_new_image_falls_back_and_reports_all_old(chain: Chain) -> None:
    tbox = chain.take()  # GOOD in slot B again, all-old after the rejected image
    started = time.monotonic()
    guest = tbox.guest
    assert guest is not None
    tbox.install(PANICS)
    _until_reboot(guest, 900)

    trial = tbox.power_on().wait_end(600)
    assert trial.panicked, trial.text[-3000:]
    assert _selected("A") in trial.text, trial.script_lines
    assert f"redstone: boot script {PANICS}" in trial.text, trial.script_lines
    assert trial.uboot_slot == "A", trial.script_lines

    guest = tbox.ready()
    record = guest.record()
    assert f"redstone: boot script {PANICS}" in record.text, record.script_lines
    assert record.uboot_slot == "B", record.script_lines
    status = _wait_end(guest, 300)
    TIMINGS["panic_total_s"] = time.monotonic() - started

    _assert_all_old(tbox, guest, status, PANICS)
    text = json.dumps(status)
    assert "tries" in text or "trial" in text, status


# -- 4. power cut (QEMU killed) at three points of the boot-script update ----------------------

# Each watcher runs in the guest (root, test only) and freezes the Master (SIGSTOP) the
# moment its condition holds, then writes what it froze to /run/tbox-cut: the host pulls
# the power with the Master stopped there (whatever it wrote meanwhile may still be in the
# page cache: a cut loses it, as on a car). The boot-script copy is 4 KiB: its "writing"
# phase lasts milliseconds under TCG, so the watcher is a Python loop reading the journal
# (no fork per poll; a shell loop with grep and sleep 0.05 froze the Master after the
# switch), and the host checks the phase it really froze.
CUTS = {
    "writing": f"'writing' in text({BOOTSCRIPT_JOURNAL!r})",
    "switched": "env() == 'B'",
    "trial": f"'tbox-trial' in text({CAMPAIGN!r})",
}
WATCHER = """
import os, signal, subprocess, sys, time, zlib
def text(path):
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return ''
def env():
    # What fw_printenv -n redstone_script prints, read in-process: a fork per poll of a
    # 1 ms loop took the guest's one CPU from the Master it watches. /etc/fw_env.config:
    # one copy at /dev/vda4, 0x4000 bytes, CRC32 (little-endian) of the rest first; a
    # block whose CRC does not match is the board defaults (no redstone_script).
    with open('/dev/vda4', 'rb') as device:
        block = device.read(0x4000)
    if int.from_bytes(block[:4], 'little') != zlib.crc32(block[4:]):
        return ''
    for item in block[4:].split(b'\\0\\0', 1)[0].split(b'\\0'):
        if item.startswith(b'redstone_script='):
            return item.split(b'=', 1)[1].decode()
    return ''
pid = int(subprocess.check_output(['systemctl', 'show', '-P', 'MainPID', 'redstone-master']))
point, condition, journal = sys.argv[1:4]
while not eval(condition):
    time.sleep(0.001)
os.kill(pid, signal.SIGSTOP)
phase = text(journal).split('"phase": "')[-1].split('"')[0]
with open('/run/tbox-cut', 'w') as out:
    out.write(f'{point} {phase} {env() or "A"}\\n')
"""


def _arm(guest: Guest, point: str) -> None:
    guest.check(f"cat > /run/tbox-watch.py <<'EOF'\n{WATCHER}EOF")
    argv = ["python3", "/run/tbox-watch.py", point, CUTS[point], BOOTSCRIPT_JOURNAL]
    guest.check("systemd-run --unit=tbox-cut --no-block " + " ".join(map(shlex.quote, argv)))


def _cut_when_frozen(tbox: Tbox, guest: Guest, point: str, timeout: float = 600) -> BootRecord:
    deadline = time.monotonic() + timeout
    while (frozen := guest.run("cat /run/tbox-cut").out.split())[:1] != [point]:
        state = _campaign(guest).get("state")
        assert state not in ("done", "failed"), f"{point}: campaign ended first ({state})"
        assert time.monotonic() < deadline, f"{point}: never reached"
        time.sleep(0.5)
    tbox.kill()  # the power cut
    if point == "writing":  # frozen inside the copy's write, before the env switch
        assert frozen[1:] == ["writing", "A"], f"the cut landed late: {frozen}"
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
    assert _selected("A") in record.text, record.script_lines
    assert f"redstone: boot script {GOOD}" not in record.text
    assert record.uboot_slot == "A", record.script_lines
    assert _release_of(guest) == FACTORY
    _arm(guest, "switched")  # the Master resumes updating-tbox by itself
    _cut_when_frozen(tbox, guest, "switched")

    # Switched: the new script runs; the rootfs slot is not primed yet, so slot A.
    guest = tbox.ready()
    record = guest.record()
    assert _selected("B") in record.text, record.script_lines
    assert f"redstone: boot script {GOOD}" in record.text, record.script_lines
    assert record.uboot_slot == "A", record.script_lines
    assert _release_of(guest) == FACTORY
    _arm(guest, "trial")
    _cut_when_frozen(tbox, guest, "trial")

    # A cut before the planned reboot is an early trial boot of the new slot.
    guest = tbox.ready()
    record = guest.record()
    assert _selected("B") in record.text, record.script_lines
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
    assert _release_of(guest) == GOOD
    _assert_copies(guest, setup.release, a=FACTORY, b=GOOD)
