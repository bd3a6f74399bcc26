"""A whole-vehicle campaign with a UDS ECU behind a Sub: the real cloud, the real
``redstone-master``, the real ``redstone-sub`` flashing the ECU simulator for it.

The virtual vehicle is composed from its parts, changed in two files only,
as an integrator would: the DoIP gateway ECU moves behind the ADAS domain
controller — ``behind = "VV-ADAS-0001"`` in master.toml (no uds-config there),
a ``[[sub.uds-ecus]]`` entry in the ADAS Sub's sub.toml. The ADAS Sub and the
Master-flashed BCM ``depends-on`` the gateway, so the gateway is flashed first
(by the software the Sub runs today) and rolled back last (after the Sub is back
on its old slot).

The truth is read from the ECUs themselves (``Car.runs``); the report and the
cloud are checked against it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from redstone_agent.vvehicle.errors import VehicleError
from redstone_agent.vvehicle.journals import peek_journal
from redstone_agent.vvehicle.plan import ADAS, BCM, GATEWAY, RELEASES, TBOX, VehiclePlan
from redstone_agent.vvehicle.vehicle import VirtualVehicle
from tests.integration.master.campaign_support import Car
from tests.support import require_tool

pytestmark = [pytest.mark.slow, pytest.mark.root]

PLAN = VehiclePlan((TBOX, ADAS, GATEWAY, BCM), failing=BCM.role)
"""Gateway behind ADAS; the Master itself flashes the BCM (the one made to fail)."""


def _tables(text: str) -> list[str]:
    return text.split("\n[[master.ecus]]\n")


def _put_gateway_behind_adas(vehicle: VirtualVehicle) -> None:
    """master.toml: the gateway is flashed by ADAS; ADAS and the BCM wait for it."""
    head, *ecus = _tables(vehicle.master_config.read_text())
    changed = []
    for table in ecus:
        lines = table.splitlines()
        if f'"{GATEWAY.serial}"' in lines[0]:
            lines = [x for x in lines if not x.startswith(("uds-config", "ecu-key"))]
            lines.append(f'behind = "{ADAS.serial}"')
        elif lines[0].endswith((f'"{ADAS.serial}"', f'"{BCM.serial}"')):
            lines.append(f'depends-on = ["{GATEWAY.serial}"]')
        changed.append("\n".join(lines))
    vehicle.master_config.write_text("\n[[master.ecus]]\n".join([head, *changed]) + "\n")


def _let_adas_flash_the_gateway(vehicle: VirtualVehicle) -> None:
    """sub.toml of ADAS: the gateway's UDS file and key, then restart it on that config."""
    adas, gateway = vehicle.sub(ADAS.role), vehicle.uds_ecu(GATEWAY.role)
    with adas.config.open("a") as config:
        config.write(
            "[[sub.uds-ecus]]\n"
            f'serial = "{GATEWAY.serial}"\n'
            f'hardware-id = "{GATEWAY.hardware_id}"\n'
            f'uds-config = "{gateway.tester_config}"\n'
            f'installed-target = "{GATEWAY.target(RELEASES[0])}"\n'
            f'ecu-key = "{gateway.key}"\n'
        )
    adas.restart()


@pytest.fixture(scope="module")
def car(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Car]:
    if os.geteuid() != 0:
        pytest.skip("the campaign suite runs the vehicle in network namespaces (root)")
    for tool in ("ip", "tc", "fw_setenv", "fw_printenv"):
        require_tool(tool)
    vehicle = VirtualVehicle(tmp_path_factory.mktemp("proxied") / "vehicle", isolated=True)
    vehicle.plan = PLAN
    with vehicle:
        _put_gateway_behind_adas(vehicle)
        _let_adas_flash_the_gateway(vehicle)
        car = Car(vehicle)
        try:
            car.assert_all(RELEASES[0])
            car.tbox.start()
        except (AssertionError, VehicleError):
            print(car.diagnosis())
            raise
        yield car


def _proxied_journal(car: Car) -> dict[str, object]:
    adas = car.vehicle.sub(ADAS.role)
    return peek_journal(adas.state_dir / "proxied" / GATEWAY.serial / "ecu.json")


def test_the_sub_and_the_ecu_behind_it_are_both_updated(car: Car) -> None:
    old = car.current
    with car.diagnosed():
        campaign, new = car.offer()
        report = car.run(campaign)

        assert (report["campaign"], report["outcome"]) == (campaign, "updated"), report
        car.assert_all(new)
        rows = car.assert_rows(report, old, new, "updated")
        gateway = rows[GATEWAY.serial]
        assert gateway["transport"] == f"doip via {ADAS.serial}", gateway
        assert gateway["bytes_downloaded"] > 0, gateway
        journal = _proxied_journal(car)
        assert (journal["state"], journal["version"]) == ("INSTALLED", new), journal
        car.assert_cloud_learns(campaign, new, "succeeded")


def test_another_ecu_failing_flashes_the_ecu_behind_the_sub_back(car: Car) -> None:
    old = car.current
    with car.diagnosed():
        car.vehicle.inject_check_failure(BCM.role)
        try:
            campaign, new = car.offer()
            report = car.run(campaign)
        finally:
            car.vehicle.clear_faults(BCM.role)

        assert report["outcome"] == "rolled-back", report
        assert BCM.serial in report["detail"] and "\n" not in report["detail"], report
        car.assert_all(old)  # read from the ECUs: the gateway runs its old image again
        rows = car.assert_rows(report, old, new, "rolled-back", "unchanged")
        assert rows[GATEWAY.serial]["outcome"] == "rolled-back", rows
        journal = _proxied_journal(car)
        assert (journal["state"], journal["version"]) == ("ROLLED_BACK", old), journal
        car.assert_cloud_learns(campaign, old, "failed")
