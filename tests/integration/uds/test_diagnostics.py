"""Diagnostics around a campaign against the real simulator (DoIP on loopback, DoCAN virtual).

Versions and DTCs are read through ``uds/diagnostics.py`` and ``UdsPort``; a
flash of an image whose start sets a DTC (``dtcs-after-flash``) must show up in
the Master's diff, clearing it must remove it, and an ECU that refuses or does
not answer must give one line, never an exception out of ``diagnose``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import pytest

from redstone_agent.ecusim.config import Faults, SimDiagnostics, SimDoCan, SimDtc
from redstone_agent.master.diagnostics import (
    Change,
    DtcChange,
    Snapshot,
    VersionChange,
    clear_new_dtcs,
    diff,
    report,
)
from redstone_agent.master.ecu_uds import UdsPort
from redstone_agent.master.errors import EcuFailed
from redstone_agent.master.ports import EcuJob, Image
from redstone_agent.master.topology import EcuKind, EcuSpec
from redstone_agent.uds.config import EcuConfig
from redstone_agent.uds.diagnostics import (
    ALL_DTCS,
    Dtc,
    clear_dtcs,
    read_dtcs,
    read_ecu,
    read_versions,
)
from redstone_agent.uds.errors import NegativeResponseError
from redstone_agent.uds.link import open_link
from redstone_agent.uds.session import Channel
from redstone_agent.uptane.keys import generate_signer
from redstone_agent.uptane.manifests import verify_ecu_manifest
from tests.integration.uds.conftest import FAST_TIMING, Make, image, sim_config

SIGNER = generate_signer()
NEW_DTC = 0x9A0B1C  # B1A0B-1C, set by the freshly flashed image
HISTORIC = SimDtc(0xC14000, 0x28)  # U0140-00: confirmed, not failing now
ACTIVE = SimDtc(0x912311, 0x09)  # B1123-11: failing, confirmed
PENDING = SimDtc(0x400102, 0x04)  # C0001-02: pending only, outside the 0x09 mask
FACTORY = SimDiagnostics(dtcs=[HISTORIC, ACTIVE, PENDING], dids={"0xF195": "SUP-0042"})


def start(doip_pair: Make, faults: Faults | None = None, **ecu: Any) -> tuple[Any, EcuConfig]:
    return doip_pair(faults=faults, sim_changes={"diagnostics": FACTORY}, **ecu)


def port_on(ecu: EcuConfig, tmp_path: Path) -> UdsPort:
    spec = EcuSpec(
        serial="BCM-01",
        kind=EcuKind.UDS_DOIP,
        hardware_id="bcm-hw",
        uds_config=tmp_path / "bcm.toml",
        installed_target="bcm-1.0.0.bin",
    )
    return UdsPort(spec, ecu, tmp_path / "state", SIGNER)


def cached(tmp_path: Path, version: str) -> Image:
    data = image(version)
    path = tmp_path / f"bcm-{version}.bin"
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    return Image(path.name, digest, len(data), version, path, url="", release_counter=3)


def test_versions_and_dtcs_over_doip(doip_pair: Make) -> None:
    _sim, ecu = start(doip_pair)
    channel = Channel(ecu, open_link)
    try:
        # 0xF194 is no DID of this ECU (NRC 0x31): left out, not an error
        assert read_versions(channel, [0xF189, 0xF194, 0xF195]) == {
            "0xF189": "1.0.0",
            "0xF195": "SUP-0042",
        }
        assert read_dtcs(channel) == [Dtc(0x912311, 0x09), Dtc(0xC14000, 0x28)]
        assert [d.display for d in read_dtcs(channel, 0xFF)] == ["C0001-02", "B1123-11", "U0140-00"]
    finally:
        channel.drop()


def test_versions_and_dtcs_over_docan(simulated: Make) -> None:
    docan = SimDoCan(interface="virtual", channel=f"diag-{id(simulated)}", block_size=0)
    _sim, ecu = simulated(sim_config(None, docan=docan, diagnostics=FACTORY))
    reading = read_ecu(ecu, dids=[0xF189, 0xF195], status_mask=0x01)
    assert reading.versions == {"0xF189": "1.0.0", "0xF195": "SUP-0042"}
    assert (reading.dtcs, reading.error) == ((Dtc(0x912311, 0x09),), "")


def test_a_dtc_set_by_the_update_is_in_the_diff_and_cleared(
    doip_pair: Make, tmp_path: Path
) -> None:
    sim, ecu = start(doip_pair, Faults(dtcs_after_flash=[NEW_DTC]))
    port = port_on(ecu, tmp_path)
    job = EcuJob("BCM-01", new=cached(tmp_path, "2.0.0"), previous=cached(tmp_path, "1.0.0"))

    async def scenario() -> None:
        before = Snapshot.of([await port.diagnose(0x09)])
        assert before.ecus["BCM-01"].error == ""
        journaled = Snapshot.from_dict(before.to_dict())  # as the Master keeps it across a kill
        await port.install(job, lambda done, total: None)
        after = Snapshot.of([await port.diagnose(0x09)])
        result = diff(journaled, after)
        bcm = result.ecus["BCM-01"]
        assert bcm.appeared == (DtcChange(NEW_DTC, Change.NEW, None, 0x2F),)
        assert bcm.cleared == () and bcm.unknown == ""
        assert bcm.versions == (VersionChange("0xF189", "1.0.0", "2.0.0"),)
        assert report(result)["summary"] == "1 new DTC: BCM-01 B1A0B-1C"

        assert await clear_new_dtcs({"BCM-01": port}, result) == {"BCM-01": "cleared B1A0B-1C"}
        again = await port.diagnose(0x09)
        assert [d.code for d in again.dtcs] == [ACTIVE.code, HISTORIC.code]  # theirs stay
        assert diff(journaled, Snapshot.of([again])).has_new_dtcs is False

    asyncio.run(scenario())
    assert sim.ecu.fault_memory.status[NEW_DTC] == 0


def test_refusals_are_one_line(doip_pair: Make, tmp_path: Path) -> None:
    sim, ecu = start(doip_pair)
    channel = Channel(ecu, open_link)
    try:
        with pytest.raises(NegativeResponseError) as refused:
            clear_dtcs(channel, 0x123456)
        assert refused.value.code == 0x31
        assert str(refused.value) == (
            "ECU ecu: clear DTC 0x123456 refused with NRC 0x31 requestOutOfRange"
        )
    finally:
        channel.drop()
    port = port_on(ecu, tmp_path)

    async def scenario() -> None:
        with pytest.raises(EcuFailed, match=r"^BCM-01: clearing DTCs failed: .* NRC 0x31 "):
            await port.clear_dtcs([0x123456])
        sim.ecu.mode = "bootloader"  # e.g. left there by a failed flash: no fault memory
        diagnosis = await port.diagnose(0x09)
        assert diagnosis.error == (
            "ECU ecu: read DTCs (mask 0x09) refused with NRC 0x11 serviceNotSupported"
        )
        assert diagnosis.dtcs == ()
        await port.clear_dtcs([])  # nothing to clear: no request at all

    asyncio.run(scenario())


def test_lost_answers_time_out_into_the_diagnosis(doip_pair: Make, tmp_path: Path) -> None:
    faults = Faults(drop_every=1, drop_services=[0x19])
    timing = dataclasses.replace(FAST_TIMING, transfer_retries=1)
    _sim, ecu = start(doip_pair, faults, timing=timing)
    diagnosis = asyncio.run(port_on(ecu, tmp_path).diagnose(0x09))
    assert diagnosis.versions == {"0xF189": "1.0.0", "0xF195": "SUP-0042"}
    assert diagnosis.error.startswith("ECU ecu: read DTCs (mask 0x09) timed out")
    assert "\n" not in diagnosis.error and diagnosis.dtcs == ()


def test_a_stopped_ecu_gives_an_error_not_an_exception(doip_pair: Make, tmp_path: Path) -> None:
    sim, ecu = start(doip_pair, timing=dataclasses.replace(FAST_TIMING, transfer_retries=1))
    port = port_on(ecu, tmp_path)
    before = asyncio.run(port.diagnose(0x09))
    sim.close()
    after = asyncio.run(port.diagnose(0x09))
    assert (
        after.error.startswith("ECU ecu: DoIP connection to 127.0.0.1:") and "\n" not in after.error
    )
    assert (after.versions, after.dtcs) == ({}, ())
    bcm = diff(Snapshot.of([before]), Snapshot.of([after])).ecus["BCM-01"]
    assert (bcm.appeared, bcm.cleared) == ((), ())
    assert bcm.unknown == f"after: {after.error}"
    with pytest.raises(EcuFailed, match=r"^BCM-01: clearing DTCs failed: "):
        asyncio.run(port.clear_dtcs([ALL_DTCS]))


def test_factory_image_manifest_gets_its_hash_from_the_first_job(
    doip_pair: Make, tmp_path: Path
) -> None:
    _sim, ecu = start(doip_pair)
    port = port_on(ecu, tmp_path)
    factory = dataclasses.replace(cached(tmp_path, "1.0.0"), target="bcm-1.0.0.bin")
    job = EcuJob("BCM-01", new=cached(tmp_path, "2.0.0"), previous=factory)

    async def scenario() -> None:
        manifest = verify_ecu_manifest(await port.manifest("n1"), SIGNER.public_key)
        assert (manifest.filename, manifest.sha256) == ("bcm-1.0.0.bin", "")
        await port.standing(job)  # the campaign's verified previous image is the factory one
        manifest = verify_ecu_manifest(await port.manifest("n2"), SIGNER.public_key)
        assert (manifest.filename, manifest.sha256) == ("bcm-1.0.0.bin", factory.sha256)
        assert (manifest.length, manifest.release_counter) == (factory.length, 3)
        assert manifest.report["version"] == "1.0.0"
        other = dataclasses.replace(factory, target="other.bin", sha256="00" * 32)
        assert port.learn_installed(other) is False  # another target: not ours to learn

    asyncio.run(scenario())
