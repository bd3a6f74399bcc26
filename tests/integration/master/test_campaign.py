"""The Master's whole-vehicle campaign against the virtual vehicle: real processes, real
sockets, no mocks (issue 10, item 10).

One vehicle (cloud, Master, two Subs, a DoCAN and a DoIP ECU, each in its own
network namespace) serves the whole module; each scenario ships a fresh
release as its own campaign and ends by reading every ECU's real version:
all-new or all-old, never mixed. Scenarios run in file order; each starts
from what the previous one left (``Car.current``).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from redstone_agent.vvehicle.errors import LabError
from tests.integration.master.campaign_support import (
    CAMPAIGN_TIMEOUT_S,
    Car,
    build_car,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.root]

CUT_RATE_KBIT = 128
"""The cloud's link while we cut it: a 32 KiB UDS image then takes seconds to download."""
SUB_RATE_KBIT = 2000
"""A Sub's link while it vanishes: its 1 MiB full image then takes seconds to arrive."""
POWER_OFF_S = 3.0
"""How long the vanished Sub stays away (the Master must wait, not decide)."""


@pytest.fixture(scope="module")
def car(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Car]:
    yield from build_car(tmp_path_factory, "campaign")


def test_happy_path_every_ecu_updated(car: Car) -> None:
    old = car.current
    with car.diagnosed():
        campaign, new = car.offer()
        report = car.run(campaign)

        assert (report["campaign"], report["outcome"]) == (campaign, "updated"), report
        car.assert_all(new)
        rows = car.assert_rows(report, old, new, "updated")
        for sub in car.vehicle.subs:  # a server-side delta carried each Sub's image
            row = rows[sub.ecu.serial]
            assert row["bytes_downloaded"] > 0 and row["bytes_saved"] > 0, row
        for uds in car.vehicle.uds:  # UDS ECUs get whole images
            row = rows[uds.ecu.serial]
            image = car.vehicle.image_file(uds.ecu, new).stat().st_size
            assert row["bytes_downloaded"] >= image and row["bytes_saved"] == 0, row
        car.assert_cloud_learns(campaign, new, "succeeded")


def test_network_cut_during_download_resumes_by_range(car: Car) -> None:
    old = car.current
    lab = car.vehicle.lab
    ranged_before = car.ranged_downloads()
    with car.diagnosed():
        lab.limit_rate("cloud", CUT_RATE_KBIT)
        try:
            campaign, new = car.offer()
            # Mid-download: the Master journals a partial file's offset as it starts.
            wait_for(
                "a download under way",
                lambda: True if car.journaled_state() == "downloading" and car.partials() else None,
                CAMPAIGN_TIMEOUT_S,
            )
            lab.unplug("cloud")
            try:
                # The stalled attempt ends on its read timeout and journals how far it got.
                cut_at = wait_for(
                    "the interrupted download to journal its offset",
                    lambda: max(car.cache_offsets().values(), default=0) or None,
                    CAMPAIGN_TIMEOUT_S,
                )
            finally:
                lab.plug("cloud")
        finally:
            lab.limit_rate("cloud", None)
        report = car.run(campaign)

        assert (report["outcome"], cut_at > 0) == ("updated", True), report
        car.assert_all(new)
        car.assert_rows(report, old, new, "updated")
        # The Master asks for a Range only from a byte it already holds (start > 0).
        assert car.ranged_downloads() > ranged_before, "no Range request (206) after the cut"
        car.assert_cloud_learns(campaign, new, "succeeded")


def test_sub_failing_verification_rolls_back_everything(car: Car) -> None:
    old = car.current
    adas = car.vehicle.sub("adas")
    genuine = adas.director_root.read_bytes()
    with car.diagnosed():
        # A director root that is not the vehicle's: the Sub refuses the forwarded metadata.
        adas.trust_director(car.vehicle.repo.root.read_bytes())
        try:
            campaign, new = car.offer()
            report = car.run(campaign)
        finally:
            adas.trust_director(genuine)

        assert report["outcome"] == "rolled-back", report
        car.assert_all(old)
        lines = [report["detail"], *(row["detail"] for row in report["ecus"])]
        assert all("\n" not in line for line in lines), lines
        assert any(adas.ecu.serial in line and "VERIFICATION_FAILED" in line for line in lines), (
            lines
        )
        rows = car.assert_rows(report, old, new, "rolled-back", "unchanged")
        assert rows[adas.ecu.serial]["outcome"] == "rolled-back", rows
        car.assert_cloud_learns(campaign, old, "failed")


def test_uds_ecu_failing_its_check_routine_rolls_back_everything(car: Car) -> None:
    old = car.current
    failing = car.vehicle.plan.failing
    with car.diagnosed():
        car.vehicle.inject_check_failure(failing)
        try:
            campaign, new = car.offer()
            report = car.run(campaign)
        finally:
            car.vehicle.clear_faults(failing)

        assert report["outcome"] == "rolled-back", report
        car.assert_all(old)
        serial = car.vehicle.plan.ecu(failing).serial
        assert serial in report["detail"] and "check" in report["detail"], report
        car.assert_rows(report, old, new, "rolled-back", "unchanged")
        car.assert_cloud_learns(campaign, old, "failed")


def test_tampered_metadata_refused_before_any_ecu_is_touched(car: Car) -> None:
    old = car.current
    before = car.ecu_journals()
    with car.diagnosed():
        version = car.next_version()
        car.vehicle.release(version)
        with car.tampered_image_metadata("timestamp.json"):
            campaign = car.vehicle.start_campaign(version)
            report = car.run(campaign)

        assert report["outcome"] == "refused", report
        detail = report["detail"]
        assert "timestamp" in detail and "sign" in detail and "\n" not in detail, report
        assert all(row["outcome"] == "unchanged" for row in report["ecus"]), report
        car.assert_all(old)
        assert car.ecu_journals() == before, "an ECU changed state although nothing was verified"
        car.assert_cloud_learns(campaign, old, "failed")


def test_sub_vanishing_mid_transfer_resumes(car: Car) -> None:
    """Decision: a Sub that dies while it receives its image and comes back resumes its
    install (its journal says TRANSFERRING), and the Master waits for it rather than
    deciding while it is away: the campaign completes, all-new."""
    old = car.current
    adas = car.vehicle.sub("adas")
    lab = car.vehicle.lab
    with car.diagnosed():
        lab.limit_rate(adas.net.name, SUB_RATE_KBIT)
        try:
            campaign, new = car.offer(deltas=False)  # a whole 1 MiB image: a window
            wait_for(
                "adas transferring",
                lambda: True if adas.state() == "TRANSFERRING" else None,
                CAMPAIGN_TIMEOUT_S,
            )
            adas.power_off()
            assert adas.state() == "TRANSFERRING", "the Sub was not killed mid-transfer"
            time.sleep(POWER_OFF_S)  # away for a while; not an assertion
            adas.power_on()
        finally:
            lab.limit_rate(adas.net.name, None)
        report = car.run(campaign)

        assert report["outcome"] == "updated", report
        car.assert_all(new)
        car.assert_rows(report, old, new, "updated")
        car.assert_cloud_learns(campaign, new, "succeeded")


def test_offline_bundle_installed_with_redstonectl_while_the_cloud_is_unreachable(
    car: Car, tmp_path: Path
) -> None:
    """A workshop installs a USB bundle: verified like an online campaign (a tampered one
    is refused in one line, nothing touched), run with no cloud, reported once back."""
    old = car.current
    vehicle = car.vehicle
    assert vehicle.cloud is not None
    with car.diagnosed():
        car.tbox.stop()  # the campaign is assigned while the TBox is off the network
        campaign, new = car.offer()
        bundle = tmp_path / "update.rsbundle"
        subprocess.run(
            [
                str(Path(sys.executable).with_name("redstone-cloud")),
                "--config",
                str(vehicle.cloud.config),
                "bundle",
                vehicle.plan.vin,
                "--output",
                str(bundle),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        tampered = tmp_path / "tampered.rsbundle"
        tampered.write_bytes(_flip_in_member(bundle.read_bytes(), "director/", "targets"))
        vehicle.lab.unplug("cloud")
        try:
            car.tbox.start()
            wait_for("the Master on D-Bus", lambda: _answers(vehicle), CAMPAIGN_TIMEOUT_S)
            with pytest.raises(LabError) as refused:
                vehicle.redstonectl("install", str(tampered))
            line = str(refused.value)
            assert "install refused (BadBundle): director repository" in line, line
            assert car.tbox.status()["state"] in ("idle", "done", "failed")
            vehicle.redstonectl("install", str(bundle), timeout=CAMPAIGN_TIMEOUT_S)
            report = car.tbox.status()["last_report"]
        finally:
            vehicle.lab.plug("cloud")
        assert (report["campaign"], report["outcome"]) == (campaign, "updated"), report
        car.assert_all(new)
        car.assert_rows(report, old, new, "updated")
        car.tbox.check_now()  # back in coverage: the signed manifest tells the cloud
        car.assert_cloud_learns(campaign, new, "succeeded")


def _answers(vehicle: Any) -> bool | None:
    try:
        vehicle.redstonectl("status", "--json")
    except LabError:
        return None
    return True


def _flip_in_member(data: bytes, prefix: str, part: str) -> bytes:
    """The bundle (a tar) with one byte changed in its first member under *prefix*
    whose name holds *part*."""
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = next(m for m in tar.getmembers() if m.name.startswith(prefix) and part in m.name)
    offset = member.offset_data + member.size // 2
    return data[:offset] + bytes([data[offset] ^ 0x01]) + data[offset + 1 :]
