"""The virtual vehicle built for real, up to the campaign the cloud offers it.

Checks what the Master will rely on: the cloud offers campaign 1 to the
vehicle's certificate; each Sub answers GetInfo through the Master node's
someipyd and runs its factory v1; each simulator answers a version read on
the lab network; the Subs' factory manifests make the director offer the
signed deltas. Teardown must leave no namespace and no process behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tuf.api.metadata import Metadata

from redstone_agent.master.topology import EcuKind
from redstone_agent.someip.client import open_sub_client
from redstone_agent.someip.interface import SubState
from redstone_agent.someip.messages import Info
from redstone_agent.someip.someipy_binding import SomeipyStack
from redstone_agent.uptane.manifests import EcuManifest, sign_ecu_manifest, sign_vehicle_manifest
from redstone_agent.vvehicle import ecus
from redstone_agent.vvehicle.images import image
from redstone_agent.vvehicle.operator import Device
from redstone_agent.vvehicle.plan import VERSIONS
from redstone_agent.vvehicle.vehicle import VirtualVehicle
from tests.support import require_tool

pytestmark = pytest.mark.slow


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


@pytest.fixture(params=["namespaces", "loopback"])
def vehicle(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VirtualVehicle]:
    isolated = request.param == "namespaces"
    if isolated:
        if os.geteuid() != 0:
            pytest.skip("network namespaces need root")
        require_tool("ip")
    for tool in ("fw_setenv", "fw_printenv"):
        require_tool(tool)
    before = _namespaces() if isolated else set()
    built = VirtualVehicle(tmp_path / "vehicle", isolated=isolated)
    with built:
        yield built
    processes = [p for node in built.lab.nodes.values() for p in node.processes]
    assert processes == [] or all(p.poll() is not None for p in processes)
    assert all(s.proc is None for s in built.subs) and all(u.proc is None for u in built.uds)
    if isolated:
        assert _namespaces() <= before, "namespaces left behind"


async def _ask_subs(vehicle: VirtualVehicle, nonce: str) -> dict[str, tuple[Info, dict[str, Any]]]:
    """GetInfo and the signed GetManifest of every Sub, through the Master node's someipyd."""
    stack = SomeipyStack(str(vehicle.master.socket_path))
    await stack.connect()
    try:
        found = {}
        for sub in vehicle.subs:
            client = open_sub_client(
                stack, sub.ecu.role, sub.ecu.instance_id, vehicle.master.ip, timeout=5.0
            )
            await client.wait_available(30.0)
            info = await client.get_info()
            envelope = json.loads(await client.get_manifest(nonce.encode()))
            found[info.ecu_serial] = (info, envelope)
        return found
    finally:
        await stack.close()


def _uds_manifest(vehicle: VirtualVehicle, role: str, nonce: str) -> dict[str, Any]:
    """What the TBox reports for an ECU without its own agent: signed with that ECU's key."""
    ecu = vehicle.plan.ecu(role)
    data = image(ecu, VERSIONS[0]) if ecu.kind is not EcuKind.SELF else b"tbox"
    target = ecu.target(VERSIONS[0]) if ecu.kind is not EcuKind.SELF else "tbox-factory"
    manifest = EcuManifest(
        ecu.serial, target, len(data), hashlib.sha256(data).hexdigest(), 1, nonce=nonce
    )
    return sign_ecu_manifest(manifest, vehicle.signers[role])


def _director_targets(device: Device, vin: str) -> dict[str, Any]:
    """Target name → custom fields of the vehicle's current director targets."""
    timestamp = Metadata.from_bytes(device.get(f"/uptane/director/{vin}/timestamp.json").content)
    path = f"/uptane/director/{vin}/{timestamp.signed.snapshot_meta.version}.snapshot.json"
    snapshot = Metadata.from_bytes(device.get(path).content)
    version = snapshot.signed.meta["targets.json"].version
    targets = Metadata.from_bytes(
        device.get(f"/uptane/director/{vin}/{version}.targets.json").content
    )
    return {name: t.custom for name, t in targets.signed.targets.items()}


def test_vehicle_up_to_the_offered_campaign(vehicle: VirtualVehicle) -> None:
    plan = vehicle.plan
    assert vehicle.isolated == any(e.kind is EcuKind.UDS_DOCAN for e in plan.ecus)
    assert vehicle.master_config.exists()
    campaign = vehicle.offer(VERSIONS[1])
    with vehicle.device() as device:
        nonce = device.client.post("/api/v1/device/nonce").json()["nonce"]
        subs = asyncio.run(_ask_subs(vehicle, nonce))
        for sub in vehicle.subs:
            info, _ = subs[sub.ecu.serial]
            assert (info.booted_slot, info.current_target, info.state) == (
                "A",
                sub.ecu.target(VERSIONS[0]),
                SubState.IDLE,
            )
        for uds in vehicle.uds:
            assert ecus.read_version(uds, vehicle.master) == VERSIONS[0]
        assert set(vehicle.versions().values()) == {VERSIONS[0]}

        # The factory state is what makes deltas possible: the Subs' own signed
        # manifests report v1, so the director offers them the signed deltas.
        envelopes = {serial: envelope for serial, (_, envelope) in subs.items()}
        for ecu in plan.ecus:
            if ecu.kind is not EcuKind.SUB:
                envelopes[ecu.serial] = _uds_manifest(vehicle, ecu.role, nonce)
        tbox = plan.ecu("tbox")
        signer = vehicle.signers["tbox"]
        body = sign_vehicle_manifest(plan.vin, tbox.serial, nonce, envelopes, signer)
        accepted = device.client.post("/api/v1/device/manifest", content=body)
        assert accepted.status_code == 200, accepted.text

        offered = device.poll()["update"]
        assert offered["campaign"] == campaign and offered["consent_required"] is False
        assert {serial: item["target"] for serial, item in offered["ecus"].items()} == {
            e.serial: e.target(VERSIONS[1]) for e in plan.updatable
        }
        director = _director_targets(device, plan.vin)
    for sub in vehicle.subs:
        deltas = [name for name in director if name.startswith(sub.ecu.target(VERSIONS[1]))]
        assert len(deltas) == 1 and ".from-" in deltas[0], director
    for uds in vehicle.uds:
        assert uds.ecu.target(VERSIONS[1]) in director


def test_the_printed_console_signs_in_and_shows_the_campaign(vehicle: VirtualVehicle) -> None:
    """What ``redstone-vehicle`` prints lets a browser on this machine watch the campaign:
    the URL answers (in namespaces through this process's relay), the certificate is
    valid for it under the printed CA, and the printed user signs in."""
    campaign = vehicle.offer(VERSIONS[1])
    console = vehicle.console
    assert console is not None and console.url.startswith("https://")
    assert oct(vehicle.cloud.workdir.joinpath("console-password").stat().st_mode)[-3:] == "600"
    trust = ssl.create_default_context(cafile=str(console.ca))  # checks the host name too
    with httpx.Client(verify=trust, timeout=30) as browser:
        login = browser.get(f"{console.url}login")
        assert login.status_code == 200, login.text
        token = re.search(r'name="csrf_token" value="([^"]+)"', login.text)
        assert token is not None
        signed_in = browser.post(
            f"{console.url}login",
            data={
                "name": console.user,
                "password": console.password,
                "csrf_token": token.group(1),
                "next": "/console/campaigns",
            },
            follow_redirects=True,
        )
        assert signed_in.status_code == 200, signed_in.text
        assert campaign in signed_in.text
