"""The TBox updates itself in a real campaign: real ``redstone-master`` processes, the real
cloud, a real Sub (ADAS, A/B slots, SOME/IP) in the same campaign.

The TBox's own slots are files with a real U-Boot env (``VirtualNode``); its
``reboot-command`` only leaves a mark. The test plays the reboot: it stops the
Master, lets the bootloader choose (``VirtualNode.reboot`` rewrites the
cmdline file the Master reads) and starts a new ``redstone-master`` process.
The health check's command reads the image in the booted slot: a good image
starts with ``GOOD``, the bad one's "app" never starts. Truth is read from the
ECUs — the Sub's booted slot and journal, the TBox's env and cmdline.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from redstone_agent.master.daemon import KILL_IN_ENV
from redstone_agent.slots import SlotManager
from redstone_agent.slots.virtual import VirtualNode
from redstone_agent.vvehicle.plan import ADAS, RELEASES, TBOX
from redstone_agent.vvehicle.vehicle import VirtualVehicle, release_counter
from tests.integration.master.campaign_support import sha256_of
from tests.support import require_tool

pytestmark = [pytest.mark.slow, pytest.mark.root]

CAMPAIGN_TIMEOUT_S = 240.0
"""Failure guard only (a campaign takes seconds); nothing asserts a duration."""
SLOT_SIZE = 256 << 10

HEALTH = """\
import pathlib, sys
words = pathlib.Path({cmdline!r}).read_text().split()
slot = [w.split("=", 1)[1] for w in words if w.startswith("redstone.slot=")][-1]
head = pathlib.Path({slots!r}[slot]).read_bytes()[:4]
if head != b"GOOD":
    print(f"redstone-app.service failed to start on slot {{slot}}")
    sys.exit(1)
print("redstone-app.service active")
"""


@dataclass
class SelfUpdatingCar:
    vehicle: VirtualVehicle
    node: VirtualNode
    marker: Path
    released: int = 0

    def slots(self) -> SlotManager:
        return SlotManager(self.node.config)

    def ship(self, *, good: bool) -> tuple[str, str]:
        """Release the next version of ADAS and of the TBox and start their campaign."""
        self.released += 1
        version = RELEASES[self.released]
        head = b"GOOD" if good else b"BAD!"
        data = head + f" tbox {version} ".encode() * 4000
        path = self.vehicle.images_dir / TBOX.target(version)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        counter = release_counter(version)
        with self.vehicle.operator() as op:
            op.upload_package(TBOX.role, version, TBOX.hardware_id, data, counter)
        self.vehicle.repo.add_image(path, TBOX.target(version), TBOX.hardware_id, counter, version)
        self.vehicle.release(version)  # ADAS (and the others' packages), signs the repository
        name = f"tbox-campaign-{self.released}"
        body = self.vehicle.plan.campaign_json(name, version)
        body["packages"] = [ADAS.target(version), TBOX.target(version)]
        with self.vehicle.operator() as op:
            op.create_campaign(body)
            op.start_campaign(name)
        return name, version

    def run(self, campaign: str) -> tuple[dict[str, Any], int]:
        """Run Masters until *campaign* is reported, rebooting the TBox whenever one asks;
        the report and the number of reboots."""
        tbox = self.vehicle.tbox
        tbox.start()
        reboots = 0
        deadline = time.monotonic() + CAMPAIGN_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.marker.exists():
                tbox.stop()  # the system goes down
                self.marker.unlink()
                self.node.reboot()  # U-Boot picks a slot
                reboots += 1
                tbox.start()  # a new redstone-master process on the booted slot
            report = self._report(campaign)
            if report is not None and self._assignment(campaign) in ("succeeded", "failed"):
                return report, reboots  # the cloud learned it too: the next campaign may start
            time.sleep(0.2)
        raise AssertionError(f"{campaign}: no report\n{tbox.log_tail(60)}")

    def _assignment(self, campaign: str) -> str:
        with self.vehicle.operator() as op:
            (row,) = op.campaign_vehicles(campaign)
        return str(row["state"])

    def _report(self, campaign: str) -> dict[str, Any] | None:
        path = self.vehicle.master.workdir / "state" / "status.json"
        try:
            status = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        report = status.get("last_report")
        ok = isinstance(report, dict) and report.get("campaign") == campaign
        return report if ok else None

    def adas(self) -> tuple[str, str]:
        """(booted version, committed sha256) of the ADAS Sub, read from the Sub."""
        sub = self.vehicle.sub(ADAS.role)
        return sub.running_version(), sub.committed_sha256()


def _self_table(node: VirtualNode, marker: Path, health: Path) -> str:
    slots = node.config_toml().replace("[slots]", "[master.self.slots]")
    slots = slots.replace("[slots.bootloader]", "[master.self.slots.bootloader]")
    reboot = [sys.executable, "-c", f"import pathlib; pathlib.Path({str(marker)!r}).touch()"]
    return "\n".join(
        [
            "",
            "[master.self]",
            f"reboot-command = {json.dumps(reboot)}",
            slots,
            "[master.self.health]",
            "cloud = true",
            "ecus = true",
            f"command = {json.dumps([sys.executable, str(health)])}",
            "timeout-s = 3.0",
            "interval-s = 0.5",
            "",
        ]
    )


@pytest.fixture(scope="module")
def car(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SelfUpdatingCar]:
    for tool in ("fw_setenv", "fw_printenv"):
        require_tool(tool)
    if os.geteuid() != 0:
        pytest.skip("the virtual vehicle's daemons bind loopback addresses as root")
    workdir = tmp_path_factory.mktemp("campaign-tbox") / "vehicle"
    with VirtualVehicle(workdir, isolated=False) as vehicle:
        node = VirtualNode.create(workdir / "tbox-slots", slot_size=SLOT_SIZE)
        marker = workdir / "reboot-requested"
        health = workdir / "tbox-health.py"
        devices = {s: str(node.config.device(s)) for s in "AB"}
        health.write_text(HEALTH.format(cmdline=str(node.config.cmdline), slots=devices))
        with vehicle.master_config.open("a") as config:
            config.write(_self_table(node, marker, health))
        yield SelfUpdatingCar(vehicle, node, marker)


def test_good_tbox_image_commits_with_the_sub_after_the_tbox_reboot(car: SelfUpdatingCar) -> None:
    campaign, version = car.ship(good=True)
    report, reboots = car.run(campaign)
    assert (report["outcome"], reboots) == ("updated", 1), report
    assert car.adas() == (version, sha256_of(car.vehicle.image_file(ADAS, version)))
    status = car.slots().status()
    assert (status.booted, status.state.value, status.slots[1].committed) == ("B", "idle", True)
    rows = {row["serial"]: row["outcome"] for row in report["ecus"]}
    assert rows == {ADAS.serial: "updated", TBOX.serial: "updated"}, report


def test_bad_tbox_image_returns_the_old_slot_and_rolls_the_sub_back(car: SelfUpdatingCar) -> None:
    old = car.adas()
    campaign, _ = car.ship(good=False)
    report, reboots = car.run(campaign)
    assert report["outcome"] == "rolled-back", report
    assert "redstone-app.service failed to start on slot A" in report["detail"], report
    assert reboots == 2  # into the new slot, and back
    assert car.adas() == old  # the Sub is all-old too
    status = car.slots().status()
    assert status.booted == "B" and status.state.value == "idle"  # B was the good one
    rows = {row["serial"]: row["outcome"] for row in report["ecus"]}
    assert rows == {ADAS.serial: "rolled-back", TBOX.serial: "rolled-back"}, report


@pytest.mark.parametrize("state", ["updating-tbox", "tbox-trial"])
def test_master_killed_in_a_tbox_state_converges_all_new(car: SelfUpdatingCar, state: str) -> None:
    tbox = car.vehicle.tbox
    tbox.stop()
    campaign, version = car.ship(good=True)
    tbox.start(env={KILL_IN_ENV: state})
    assert tbox.wait_exit(CAMPAIGN_TIMEOUT_S) == -signal.SIGKILL
    assert not car.marker.exists()  # killed before it asked for the reboot
    report, reboots = car.run(campaign)  # started again, without the variable
    assert (report["outcome"], reboots) == ("updated", 1), report
    assert car.adas() == (version, sha256_of(car.vehicle.image_file(ADAS, version)))
    status = car.slots().status()
    assert status.state.value == "idle" and status.slots["AB".index(status.booted)].committed
    assert car.slots().images.load()[status.booted]["sha256"] == sha256_of(  # type: ignore[index]
        car.vehicle.images_dir / TBOX.target(version)
    )
