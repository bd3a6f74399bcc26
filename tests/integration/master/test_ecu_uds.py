"""UdsPort against the real ECU simulator, over DoCAN (python-can ``virtual``) and DoIP (loopback).

The simulator reads its version DID from the image (first 16 bytes of the
first region), so each test image carries its version there, exactly as the
Master's ``Image.version`` says.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from redstone_agent.ecusim.config import Faults, SimConfig, SimDoCan, SimDoIp, SimMemory
from redstone_agent.ecusim.runner import BackgroundSimulator
from redstone_agent.master.ecu_uds import UdsPort
from redstone_agent.master.errors import EcuFailed
from redstone_agent.master.ports import EcuJob, EcuStanding, Image
from redstone_agent.master.topology import EcuKind, EcuSpec
from redstone_agent.uptane.keys import generate_signer
from redstone_agent.uptane.manifests import new_nonce, verify_ecu_manifest
from tests.integration.uds.conftest import FAST_TIMING, REGION, image

_channels = itertools.count()
Start = Callable[..., tuple[BackgroundSimulator, UdsPort]]
SIGNER = generate_signer()


@pytest.fixture(params=["docan", "doip"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def start(transport: str, tmp_path: Path) -> Iterator[Start]:
    """``start(faults=..., dual_bank=...)`` → a running simulator and a UdsPort on it."""
    running: list[BackgroundSimulator] = []

    def make(
        faults: Faults | None = None, dual_bank: bool = False
    ) -> tuple[BackgroundSimulator, UdsPort]:
        link: dict[str, Any]
        if transport == "docan":
            channel = f"master-uds-{os.getpid()}-{next(_channels)}"
            link = {"docan": SimDoCan(interface="virtual", channel=channel, block_size=0)}
        else:
            link = {"doip": SimDoIp(tcp_port=0, udp_port=0, max_block_length=0x2002)}
        sim = BackgroundSimulator(
            SimConfig(
                "bcm",
                memory=SimMemory(regions=[REGION], dual_bank=dual_bank),
                faults=faults or Faults(),
                erase_time=0.02,
                reset_time=0.02,
                **link,
            )
        ).__enter__()
        running.append(sim)
        ecu = sim.tester_config(timing=FAST_TIMING)
        ecu = dataclasses.replace(
            ecu, programming=dataclasses.replace(ecu.programming, reset_settle=0.05)
        )
        kind = EcuKind.UDS_DOCAN if transport == "docan" else EcuKind.UDS_DOIP
        spec = EcuSpec(
            serial="BCM-01",
            kind=kind,
            hardware_id="bcm-hw",
            uds_config=tmp_path / "bcm.toml",
            installed_target="bcm-1.0.0.bin",
        )
        return sim, UdsPort(spec, ecu, tmp_path / "state", SIGNER)

    yield make
    for sim in running:
        sim.close()


def cached(tmp_path: Path, version: str, size: int = 12_000) -> Image:
    """An image in the "cache" whose embedded version is ``version``."""
    data = image(version, size)
    path = tmp_path / f"bcm-{version}.bin"
    path.write_bytes(data)
    return Image(
        target=path.name,
        sha256=hashlib.sha256(data).hexdigest(),
        length=len(data),
        version=version,
        path=path,
        url="",
    )


def version_of(sim: BackgroundSimulator) -> str:
    raw = sim.ecu.memory.read_active(REGION.name, 0, 16)
    return raw.rstrip(b"\0").decode() if sim.ecu.memory.banks[sim.ecu.memory.active].valid else ""


def test_install_is_convergent_and_rollback_flashes_the_previous_back(
    start: Start, tmp_path: Path
) -> None:
    sim, port = start()
    old, new = cached(tmp_path, "1.0.0"), cached(tmp_path, "2.0.0")
    job = EcuJob("BCM-01", new=new, previous=old)
    progress: list[tuple[int, int]] = []

    async def scenario() -> None:
        assert await port.standing(job) is EcuStanding.OLD
        result = await port.install(job, lambda done, total: progress.append((done, total)))
        assert result.bytes_sent == new.length and not result.used_delta
        assert await port.standing(job) is EcuStanding.NEW
        nonce = new_nonce()
        envelope = await port.manifest(nonce)
        manifest = verify_ecu_manifest(
            envelope, SIGNER.public_key, expected_serial="BCM-01", expected_nonce=nonce
        )
        assert manifest.filename == new.target
        assert (manifest.sha256, manifest.length) == (new.sha256, new.length)
        assert manifest.report["version"] == "2.0.0"

        blocks = sim.ecu.blocks_seen
        again = await port.install(job, lambda done, total: None)
        assert again.detail == "already runs 2.0.0" and again.bytes_sent == 0
        assert sim.ecu.blocks_seen == blocks  # no second flash
        assert (await port.activate(job)).detail == (await port.commit(job)).detail == "runs 2.0.0"

        await port.rollback(job)
        assert version_of(sim) == "1.0.0"
        assert await port.standing(job) is EcuStanding.OLD
        blocks = sim.ecu.blocks_seen
        await port.rollback(job)  # already old: nothing flashed
        assert sim.ecu.blocks_seen == blocks
        manifest = verify_ecu_manifest(await port.manifest(nonce), SIGNER.public_key)
        assert (manifest.filename, manifest.sha256) == (old.target, old.sha256)

    asyncio.run(scenario())
    assert progress and progress[-1] == (new.length, new.length)


def test_manifest_trusts_the_journal_only_while_the_version_confirms_it(
    start: Start, tmp_path: Path
) -> None:
    sim, port = start()
    job = EcuJob("BCM-01", new=cached(tmp_path, "2.0.0"))

    async def scenario() -> None:
        # Factory image: its version is unknown to the Master, its target is configured.
        manifest = verify_ecu_manifest(await port.manifest("n1"), SIGNER.public_key)
        assert (manifest.filename, manifest.sha256) == ("bcm-1.0.0.bin", "")
        assert manifest.report["version"] == "1.0.0"
        await port.install(job, lambda done, total: None)
        # Someone flashes the ECU behind the Master's back: the manifest says so.
        sim.ecu.memory.load_image(0, REGION.name, image("9.9.9"))
        manifest = verify_ecu_manifest(await port.manifest("n2"), SIGNER.public_key)
        assert (manifest.filename, manifest.sha256) == ("9.9.9", "")
        assert "reports version '9.9.9', not the journaled '2.0.0'" in manifest.report["detail"]
        assert await port.standing(job) is EcuStanding.OLD  # no previous to compare with

    asyncio.run(scenario())


def test_failed_check_routine_is_one_line_and_the_ecu_runs_the_previous_image(
    start: Start, tmp_path: Path
) -> None:
    # The check-memory routine reports a CRC mismatch; the dual-bank ECU keeps its old bank.
    sim, port = start(faults=Faults(wrong_checksum=True), dual_bank=True)
    job = EcuJob("BCM-01", new=cached(tmp_path, "2.0.0"), previous=cached(tmp_path, "1.0.0"))

    async def scenario() -> None:
        with pytest.raises(EcuFailed) as failed:
            await port.install(job, lambda done, total: None)
        message = str(failed.value)
        assert "\n" not in message
        assert message.startswith("BCM-01: flashing 2.0.0 failed: ")
        assert "check memory" in message and "it still runs 1.0.0" in message
        assert await port.standing(job) is EcuStanding.OLD
        await port.rollback(job)  # nothing to undo

    asyncio.run(scenario())
    assert version_of(sim) == "1.0.0"


def test_new_image_that_does_not_start_is_restored_from_the_previous(
    start: Start, tmp_path: Path
) -> None:
    # Single bank: the erase destroyed 1.0.0; the flasher programs it back.
    sim, port = start(faults=Faults(boot_failure=1))
    old, new = cached(tmp_path, "1.0.0"), cached(tmp_path, "2.0.0")
    job = EcuJob("BCM-01", new=new, previous=old)

    async def scenario() -> None:
        with pytest.raises(EcuFailed, match=r"previous image was flashed back and runs 1\.0\.0"):
            await port.install(job, lambda done, total: None)
        assert await port.standing(job) is EcuStanding.OLD
        manifest = verify_ecu_manifest(await port.manifest("n1"), SIGNER.public_key)
        assert (manifest.filename, manifest.sha256) == (old.target, old.sha256)

    asyncio.run(scenario())
    assert version_of(sim) == "1.0.0"


def test_dual_bank_rollback_without_previous_switches_banks(start: Start, tmp_path: Path) -> None:
    sim, port = start(dual_bank=True)
    job = EcuJob("BCM-01", new=cached(tmp_path, "2.0.0"))

    async def scenario() -> None:
        await port.install(job, lambda done, total: None)
        assert version_of(sim) == "2.0.0"
        result = await port.rollback(job)
        assert result.detail == "switched back to its other bank, runs 1.0.0"
        assert await port.standing(job) is EcuStanding.OLD

    asyncio.run(scenario())


def test_single_bank_without_previous_cannot_roll_back(start: Start, tmp_path: Path) -> None:
    _sim, port = start()
    job = EcuJob("BCM-01", new=cached(tmp_path, "2.0.0"))

    async def scenario() -> None:
        await port.install(job, lambda done, total: None)
        with pytest.raises(EcuFailed, match="no previous image and the ECU is single-bank"):
            await port.rollback(job)

    asyncio.run(scenario())


def test_manifest_during_a_flash_says_so_without_waiting(start: Start, tmp_path: Path) -> None:
    _sim, port = start()
    job = EcuJob("BCM-01", new=cached(tmp_path, "2.0.0", size=60_000))

    async def scenario() -> None:
        downloading = asyncio.Event()
        flash = asyncio.create_task(port.install(job, lambda _d, _t: downloading.set()))
        await asyncio.wait_for(downloading.wait(), 20)
        manifest = verify_ecu_manifest(await port.manifest("n1"), SIGNER.public_key)
        assert not flash.done()
        assert (manifest.filename, manifest.report["detail"]) == ("", "flashing 2.0.0")
        await flash

    asyncio.run(scenario())


def test_a_flash_stopped_by_the_campaign_ends_before_the_call_returns_and_runs_again(
    start: Start, tmp_path: Path
) -> None:
    """on-break = "abort": the engine cancels install(); the worker thread must stop at
    its next request before the cancel returns (the bus is free, no flash behind our
    back), and the next install flashes the ECU from its bootloader to the new image."""
    sim, port = start()
    old, new = cached(tmp_path, "1.0.0"), cached(tmp_path, "2.0.0", size=60_000)
    job = EcuJob("BCM-01", new=new, previous=old)

    async def scenario() -> None:
        downloading = asyncio.Event()
        flash = asyncio.create_task(port.install(job, lambda _d, _t: downloading.set()))
        await asyncio.wait_for(downloading.wait(), 20)
        flash.cancel()
        with pytest.raises(asyncio.CancelledError):
            await flash
        blocks = sim.ecu.blocks_seen
        await asyncio.sleep(0.2)
        assert sim.ecu.blocks_seen == blocks, "the flash went on after the cancel returned"
        assert await port.standing(job) is not EcuStanding.NEW
        result = await port.install(job, lambda _d, _t: None)
        assert result.bytes_sent == new.length
        assert await port.standing(job) is EcuStanding.NEW
        assert version_of(sim) == "2.0.0"

    asyncio.run(scenario())
