"""The agent in a real vehicle image: systemd, D-Bus, SocketCAN, U-Boot A/B (issue 13, item 3).

One guest of the vehicle board (tools/qemu/vehicle: Debian 12 minbase, systemd, the agent
installed from its wheel into /opt/redstone, the units of systemd/ enabled) on real U-Boot.
It is the TBox *and* a domain controller: redstone-master and redstone-sub (owning the
board's own slots /dev/vda2, /dev/vda3 through the U-Boot env on /dev/vda4) talk SOME/IP
through the node's someipyd on loopback; a UDS ECU simulator runs on the kernel's vcan0.
Campaigns come from a real cloud on the host as offline bundles on a "USB stick".

Boots are few (each costs ~1 min under TCG): the D-Bus/systemd checks (d) and the
vcan flash (c) share one boot; the Sub update (a) and the failed update (b) follow in
one sequence of power cycles on the same board.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tools.qemu.board import Board
from tools.qemu.console import BootRecord
from tools.qemu.machine import missing_requirements
from tools.qemu.vehicle.base import missing_root
from tools.qemu.vehicle.board import power_on, vehicle_disk_template
from tools.qemu.vehicle.guest import Guest, GuestError
from tools.qemu.vehicle.image import build_image

from redstone_agent.vvehicle.plan import BCM
from tests.system.vehicle_world import (
    BAD_BUNDLE,
    BCM_BUNDLE,
    BODY,
    FACTORY,
    GOOD_BUNDLE,
    SIM_BCM,
    guest_release,
)

# The module's first test also builds the cached artifacts (cold: debootstrap, image)
# and boots; (a) and (b) each span several power cycles under TCG.
pytestmark = [pytest.mark.system, pytest.mark.slow, pytest.mark.timeout(1500)]

BOOT_S = 300.0
"""Guard from power-on to the command channel (U-Boot + kernel + systemd under TCG)."""
STICK = "/media/stick"
INSTALL_CALL_S = 300.0
"""Guard on ``redstonectl install --no-wait``: the Master verifies the bundle's metadata
before it answers, which under TCG on a loaded CI machine took more than a minute."""
MASTER = ("org.redstone.Master", "/org/redstone/Master", "org.redstone.Master1")


@dataclass
class Vehicle:
    """The board and the guest of its current power cycle, and the cached stick."""

    board: Board
    guest: Guest
    stick: Path
    timings: dict[str, float]

    def power_on(self) -> Guest:
        """The next power cycle (the stick stays plugged in); the channel is not waited for."""
        self.guest.kill()
        self.guest = power_on(self.board, (self.stick,))
        return self.guest

    def ready(self) -> Guest:
        """Wait for the channel, mount the stick."""
        self.timings[f"boot{self.board.boots}_to_channel_s"] = self.guest.wait_ready(BOOT_S)
        self.guest.check(f"mount -o ro /dev/vdb {STICK}")
        return self.guest


@pytest.fixture(scope="module")
def vehicle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vehicle]:
    """The factory board (cached with its stick: tests/system/vehicle_world.py) powered on:
    boot 1, channel up, stick mounted."""
    reason = missing_requirements() or missing_root()
    if reason is not None:
        pytest.skip(f"vehicle guest cannot run: {reason}")
    timings: dict[str, float] = {}
    started = time.monotonic()
    template = vehicle_disk_template()
    image_dir = build_image()
    timings["artifacts_s"] = time.monotonic() - started
    made = guest_release(template, image_dir)  # cached: cloud, bundles, factory disk
    timings["release_s"] = time.monotonic() - started - timings["artifacts_s"]
    board = Board.create(tmp_path_factory.mktemp("vehicle") / "board", made.disk)
    guest: Guest | None = power_on(board, (made.stick,))
    try:
        assert guest is not None
        vehicle = Vehicle(board, guest, made.stick, timings)
        vehicle.ready()
        yield vehicle
        guest = vehicle.guest
    finally:
        if guest is not None:
            guest.kill()
        timings["module_total_s"] = time.monotonic() - started
        print(f"vehicle guest timings: {json.dumps(timings)}")


def _settled(guest: Guest, units: tuple[str, ...], timeout: float = 180.0) -> dict[str, str]:
    """Each unit's ActiveState once none is 'activating' (or the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        states = {
            unit: guest.run(f"systemctl show -P ActiveState {unit}").out.strip() for unit in units
        }
        if "activating" not in states.values() or time.monotonic() > deadline:
            return states
        time.sleep(2)


# -- (d) systemd and the system D-Bus ----------------------------------------------------------


def test_daemons_run_under_systemd_and_reported_ready(vehicle: Vehicle) -> None:
    guest = vehicle.guest
    units = ("someipyd.service", "redstone-sub.service", "redstone-master.service")

    states = _settled(guest, units)

    assert states == dict.fromkeys(units, "active"), guest.run(
        "systemctl status --no-pager " + " ".join(units)
    ).out
    assert guest.run("systemctl is-active " + " ".join(units)).out.split() == ["active"] * 3
    for unit in ("redstone-sub.service", "redstone-master.service"):
        shown = dict(
            line.split("=", 1)
            for line in guest.check(
                f"systemctl show -p Type -p NotifyAccess -p BusName -p MainPID -p User {unit}"
            ).split()
        )
        assert shown["Type"] == "notify" and shown["NotifyAccess"] == "main", shown
        # Type=notify: systemd logs "Started" only once the daemon sent READY=1.
        journal = guest.check(f"journalctl -b -o cat -u {unit} --no-pager")
        assert "Started " in journal, journal[-2000:]
        # The daemon runs as the unit says, as the D-Bus name's owner.
        owner = guest.check(f"busctl --system status {shown['BusName']} | grep -E '^(PID|UID)='")
        assert f"PID={shown['MainPID']}" in owner, owner
        # What the daemon told systemd with READY=1 (STATUS=...).
        assert guest.check(f"systemctl show -P StatusText {unit}").strip(), unit
    master_uid = guest.check("id -u redstone-master").strip()
    assert f"UID={master_uid}" in guest.check(f"busctl --system status {MASTER[0]} | grep ^UID=")


def test_redstonectl_status_reads_the_master_on_the_system_bus(vehicle: Vehicle) -> None:
    guest = vehicle.guest

    plain = guest.run("redstonectl status")
    as_json = guest.run("redstonectl status --json")
    sub = guest.run("redstonectl --service sub status --json")

    assert plain.ok, plain.out
    assert as_json.ok, as_json.out
    status = json.loads(as_json.out)
    assert "state" in status and "progress" in status, status
    assert sub.ok, sub.out
    assert json.loads(sub.out)["state"] == "IDLE"


def test_busctl_sees_both_names_and_calls_status(vehicle: Vehicle) -> None:
    guest = vehicle.guest
    service, path, interface = MASTER

    names = guest.check("busctl --system list --no-pager --no-legend")
    called = guest.check(f"busctl --system --json=short call {service} {path} {interface} Status")

    by_name = {line.split()[0]: line for line in names.splitlines() if line.strip()}
    assert "redstone-master.service" in by_name["org.redstone.Master"]
    assert "redstone-sub.service" in by_name["org.redstone.Sub"]
    document = json.loads(json.loads(called)["data"][0])
    assert document == json.loads(guest.check("redstonectl status --json"))


def test_an_unprivileged_user_reads_but_is_refused_a_control_method(vehicle: Vehicle) -> None:
    guest = vehicle.guest
    service, path, interface = MASTER
    as_nobody = "setpriv --reuid=nobody --regid=nogroup --clear-groups"

    read = guest.run(f"{as_nobody} busctl --system call {service} {path} {interface} Status")
    refused = guest.run(f"{as_nobody} busctl --system call {service} {path} {interface} CheckNow")
    ctl = guest.run(f"{as_nobody} redstonectl cancel")
    root = guest.run(f"busctl --system call {service} {path} {interface} CheckNow")

    assert read.ok, read.out
    assert not refused.ok
    assert "Access denied" in refused.out or "AccessDenied" in refused.out, refused.out
    assert ctl.rc == 1 and "not allowed for this user" in ctl.out, ctl.out
    assert root.ok, root.out  # the same call is the policy's, not a broken method


# -- (c) a UDS ECU on the guest's kernel vcan0 ------------------------------------------------


def test_the_master_flashes_an_ecu_on_kernel_vcan_through_an_nrc_storm(vehicle: Vehicle) -> None:
    guest = vehicle.guest
    assert guest.run("systemctl is-active redstone-test-vcan.service").out.strip() == "active"
    link = guest.check("ip -details link show vcan0")
    assert "vcan" in link and "UP" in link, link
    modules = guest.check("lsmod")
    assert all(m in modules for m in ("vcan", "can_raw", "can ")), modules
    guest.check(
        "systemd-run --unit=test-ecusim --property=Restart=no "
        f"/usr/bin/redstone-ecusim {STICK}/{SIM_BCM} --json"
    )
    _wait_for(guest, 'journalctl -o cat -u test-ecusim | grep -q \'"name": *"bcm"\'', 120)
    before = _can_frames(guest)

    started = time.monotonic()
    answer = guest.run(f"redstonectl install --no-wait {STICK}/{BCM_BUNDLE}", INSTALL_CALL_S)
    assert answer.ok, answer.out
    record = _wait_campaign_end(guest, 600)
    vehicle.timings["c_flash_bcm_s"] = time.monotonic() - started

    assert record["state"] == "done", record
    row = record["ecus"][BCM.serial]
    assert (row["old"], row["new"], row["outcome"]) == (
        BCM.target(FACTORY),
        BCM.target("2.0.0"),
        "updated",
    ), row
    # What the ECU itself says now, read by the Master after the flash (diagnostics).
    versions = record["diagnostics"]["after"]["ecus"][BCM.serial]["versions"]
    assert versions["0xF189"] == "2.0.0", record["diagnostics"]
    # Real kernel CAN traffic: vcan0's own counters moved (ISO-TP frames of the flash).
    assert _can_frames(guest) - before > 100
    # The storm was played and sat out: busy answers to RequestDownload, repeated.
    master_log = guest.check("journalctl -b -o cat -u redstone-master --no-pager")
    assert master_log.count("BusyRepeatRequest (0x21)") >= 2, master_log[-3000:]
    assert "request download busy (NRC 0x21), repeating" in master_log


def test_the_master_keeps_its_bus_name_through_a_flash(vehicle: Vehicle) -> None:
    owner = vehicle.guest.run(f"busctl --system status {MASTER[0]}")
    assert owner.ok, owner.out


def _can_frames(guest: Guest) -> int:
    stats = json.loads(guest.check("ip -j -s link show vcan0"))
    return int(stats[0]["stats64"]["tx"]["packets"])


def _wait_for(guest: Guest, command: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not guest.run(command).ok:
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:g} s waiting for: {command}")
        time.sleep(1)


# -- (a) a Sub update through the systemd-managed daemons, committed after boot-complete ------


def _status(guest: Guest) -> dict[str, Any]:
    document = json.loads(guest.check("redstonectl status --json"))
    assert isinstance(document, dict)
    return document


def _campaign(guest: Guest) -> dict[str, Any]:
    """The Master's campaign record as journaled (the truth ``Status()`` serves; read
    from the file so a Master that lost its bus name is still observed)."""
    result = guest.run("cat /var/lib/redstone/master/campaign.json")
    if not result.ok:
        return {}
    record = json.loads(result.out)["state"]
    assert isinstance(record, dict)
    return record


def _wait_campaign_end(guest: Guest, timeout: float) -> dict[str, Any]:
    """The Master's campaign record once the campaign reached done or failed."""
    deadline = time.monotonic() + timeout
    while True:
        status = _campaign(guest)
        if status.get("state") in ("done", "failed"):
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"campaign did not end within {timeout:g} s: {status}")
        time.sleep(3)


def _until_reboot(vehicle: Vehicle, timeout: float) -> BootRecord:
    """Follow the Master's campaign until the guest ends its power cycle itself; a
    campaign that fails before any reboot fails the test at once, with its record."""
    guest = vehicle.guest
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            record = _campaign(guest)
        except GuestError:
            break  # the channel closed: the guest is going down
        if record.get("state") == "failed":
            raise AssertionError(f"campaign failed before the reboot: {json.dumps(record)}")
        time.sleep(5)
    return guest.wait_end(max(deadline - time.monotonic(), 60))


def _env(guest: Guest) -> dict[str, str]:
    out = guest.check("fw_printenv")
    return dict(line.split("=", 1) for line in out.splitlines() if line.startswith("redstone_"))


def _sub_row(status: dict[str, Any]) -> dict[str, Any]:
    row = status["ecus"][BODY.serial]
    assert isinstance(row, dict)
    return row


def test_a_sub_update_reboots_into_the_new_slot_and_commits_after_boot_complete(
    vehicle: Vehicle,
) -> None:
    guest = vehicle.guest
    assert _settled(guest, ("redstone-master.service",)) == {"redstone-master.service": "active"}
    started = time.monotonic()
    answer = guest.run(f"redstonectl install --no-wait {STICK}/{GOOD_BUNDLE}", INSTALL_CALL_S)
    assert answer.ok, answer.out

    # The Master transfers, the Sub writes slot B and reboots the board (systemctl reboot).
    ended = _until_reboot(vehicle, 1200)
    vehicle.timings["a_install_until_reboot_s"] = time.monotonic() - started
    assert ended.ending != "timeout", ended.text[-3000:]
    assert "reboot" in ended.text.lower(), ended.text[-3000:]

    guest = vehicle.power_on()
    guest = vehicle.ready()
    record = guest.record()
    assert record.uboot_slot == "B", record.script_lines
    assert "redstone.slot=B" in guest.check("cat /proc/cmdline")
    assert guest.check("cat /etc/redstone-release").strip() == "version=2.0.0"
    status = _wait_campaign_end(guest, 600)
    vehicle.timings["a_total_s"] = time.monotonic() - started

    assert status["state"] == "done", status
    assert _sub_row(status)["new"] == BODY.target("2.0.0"), status
    env = _env(guest)
    assert (env["redstone_B_ok"], env["redstone_B_tries"]) == ("1", "0"), env
    assert env["redstone_order"] == "B A", env
    # The commit came after systemd's boot assessment: boot-complete.target was reached
    # (redstone-health.service passed) before the Sub reported itself healthy.
    assert guest.run("systemctl is-active boot-complete.target").out.strip() == "active"
    assert guest.run("systemctl is-active redstone-health.service").out.strip() == "active"
    sub_log = guest.check("journalctl -b -o cat -u redstone-sub --no-pager")
    assert "awaiting commit" in sub_log or "healthy" in sub_log, sub_log[-3000:]
    commit_unit = guest.check("systemctl show -P ConditionResult -P Result redstone-sub-commit")
    assert "exec-condition" in commit_unit or "no" in commit_unit.split(), commit_unit


# -- (b) an image whose health check fails: the Sub falls back, the Master reports it ----------


def test_b_an_image_failing_its_health_check_falls_back_to_the_old_slot(vehicle: Vehicle) -> None:
    guest = vehicle.guest
    started = time.monotonic()
    answer = guest.run(f"redstonectl install --no-wait {STICK}/{BAD_BUNDLE}", INSTALL_CALL_S)
    assert answer.ok, answer.out

    ended = _until_reboot(vehicle, 1200)  # written into slot A, rebooted into its trial
    assert ended.ending != "timeout", ended.text[-3000:]
    trial = vehicle.power_on().wait_end(600)  # the trial boot: health fails, the Sub falls back
    vehicle.timings["b_trial_boot_s"] = time.monotonic() - started
    assert trial.ending != "timeout", trial.text[-3000:]
    assert trial.uboot_slot == "A", trial.script_lines
    assert "REDSTONE: rootfs version=3.0.0" in trial.text

    guest = vehicle.power_on()
    guest = vehicle.ready()
    assert guest.record().uboot_slot == "B"
    assert guest.check("cat /etc/redstone-release").strip() == "version=2.0.0"
    # The trial boot's own journal (kept on the data partition): the product check
    # failed, boot-complete.target was not reached, the Sub fell back by itself.
    health = guest.check("journalctl -b -1 -o cat -u redstone-health --no-pager")
    assert "body-selftest: door module does not answer" in health, health[-2000:]
    trial_sub = guest.check("journalctl -b -1 -o cat -u redstone-sub --no-pager")
    assert "boot assessment failed" in trial_sub, trial_sub[-3000:]
    env = _env(guest)
    assert env["redstone_A_ok"] == "0" and env["redstone_B_ok"] == "1", env
    vehicle.timings["b_until_old_slot_s"] = time.monotonic() - started


def test_b_the_master_reports_the_rollback(vehicle: Vehicle) -> None:
    guest = vehicle.guest
    started = time.monotonic()
    status = _wait_campaign_end(guest, 600)
    vehicle.timings["b_report_s"] = time.monotonic() - started

    assert status["state"] == "failed", status
    row = _sub_row(status)
    assert "roll" in str(row["outcome"]) or "fell back" in str(row["detail"]), row
    assert "fell back to its old image after the trial boot" in str(status["error"]), status
    env = _env(guest)
    assert env["redstone_order"].startswith("B"), env
    assert env["redstone_A_ok"] == "0", env
    sub = json.loads(guest.check("redstonectl --service sub status --json"))
    assert sub["state"] == "ROLLED_BACK", sub
