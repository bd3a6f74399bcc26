"""End-to-end flashes against the simulator over DoIP (loopback) and DoCAN (virtual bus)."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import zlib
from typing import Any

import pytest

from redstone_agent.ecusim.config import Faults
from redstone_agent.uds.config import SecuritySettings
from redstone_agent.uds.errors import ImageError, UnknownEcuError
from redstone_agent.uds.flasher import Flasher, FlashImage, Progress
from redstone_agent.uds.rollback import Outcome
from tests.integration.uds.conftest import REGION, image


def test_doip_flash_installs_and_reports_progress(doip_pair: Any) -> None:
    sim, ecu = doip_pair()
    seen: list[Progress] = []
    report = Flasher(ecu).install(FlashImage(image("2.0.0"), "2.0.0"), progress=seen.append)
    assert report.outcome is Outcome.INSTALLED, report
    assert (report.version_before, report.version_after) == ("1.0.0", "2.0.0")
    assert sim.ecu.mode == "application"
    assert sim.ecu.fingerprint == b"REDSTONE"
    phases = [p.phase for p in seen]
    assert phases.index("erase") < phases.index("download") < phases.index("verify")
    downloads = [p for p in seen if p.phase == "download"]
    assert downloads[-1].done == downloads[-1].total == len(image("2.0.0"))


def test_doip_discovery_finds_the_entity(doip_pair: Any) -> None:
    _sim, ecu = doip_pair()
    ecu = dataclasses.replace(
        ecu, doip=dataclasses.replace(ecu.doip, host="", discovery_address="127.0.0.1")
    )
    assert Flasher(ecu).install(FlashImage(image("2.1.0"), "2.1.0")).outcome is Outcome.INSTALLED


def test_docan_flash_over_virtual_bus(docan_pair: Any) -> None:
    sim, ecu = docan_pair()
    report = Flasher(ecu).install(FlashImage(image("3.0.0", 9000), "3.0.0"))
    assert report.outcome is Outcome.INSTALLED, report
    assert sim.ecu.memory.read_active("app", 0, 9000) == image("3.0.0", 9000)


@pytest.mark.parametrize(
    "faults",
    [
        Faults(drop_every=3, drop_services=[0x36]),
        Faults(power_loss_after_blocks=2, power_loss_time=0.3),
    ],
    ids=["dropped-block-ack", "power-loss"],
)
def test_docan_survives_transient_faults(docan_pair: Any, faults: Faults) -> None:
    sim, ecu = docan_pair(faults=faults)
    data = image("3.2.0", 20_000)
    report = Flasher(ecu).install(FlashImage(data, "3.2.0"))
    assert report.outcome is Outcome.INSTALLED, report
    assert report.blocks_resent + report.restarts >= 1
    assert sim.ecu.memory.read_active("app", 0, len(data)) == data


def test_docan_boot_failure_restores_previous_image(docan_pair: Any) -> None:
    sim, ecu = docan_pair(faults=Faults(boot_failure=1))
    previous = FlashImage(image("1.0.0", 8000), "1.0.0")
    report = Flasher(ecu).install(FlashImage(image("3.3.0", 8000), "3.3.0"), previous=previous)
    assert report.outcome is Outcome.RESTORED, report
    assert (report.version_after, sim.ecu.mode) == ("1.0.0", "application")


def test_docan_extended_ids_unpadded_with_flow_control(docan_pair: Any) -> None:
    can = {
        "extended_id": True,
        "tx_id": 0x18DA10F1,
        "rx_id": 0x18DAF110,
        "padding": False,
        "block_size": 4,
        "st_min_ms": 1,
    }
    sim, ecu = docan_pair(can=can)
    data = image("3.4.0", 3000)
    assert Flasher(ecu).install(FlashImage(data, "3.4.0")).outcome is Outcome.INSTALLED
    assert sim.ecu.memory.read_active("app", 0, len(data)) == data


def test_docan_fd_flash(docan_pair: Any) -> None:
    _sim, ecu = docan_pair(fd=True)
    assert (
        Flasher(ecu).install(FlashImage(image("3.1.0", 9000), "3.1.0")).outcome is Outcome.INSTALLED
    )


def test_compression_sends_fewer_bytes(doip_pair: Any) -> None:
    sim, ecu = doip_pair(compression="zlib")
    data = b"4.0.0".ljust(16, b"\0") + bytes(60_000)
    report = Flasher(ecu).install(FlashImage(data, "4.0.0"))
    assert report.outcome is Outcome.INSTALLED
    assert report.payload_bytes < len(data) // 10
    assert sim.ecu.memory.read_active("app", 0, len(data)) == data


def test_compression_falls_back_when_the_ecu_lacks_it(doip_pair: Any) -> None:
    _sim, ecu = doip_pair(compression="zlib", sim_changes={"compression": ["none"]})
    data = image("4.1.0")
    report = Flasher(ecu).install(FlashImage(data, "4.1.0"))
    assert report.outcome is Outcome.INSTALLED
    assert report.payload_bytes == len(data)


@pytest.mark.parametrize(
    ("faults", "check"),
    [
        pytest.param(
            Faults(drop_every=4),
            lambda r: r.blocks_resent + r.restarts >= 1,
            marks=pytest.mark.slow,  # a quarter of all answers lost: ~5 s of P2 timeouts
        ),
        (
            Faults(drop_every=3, drop_services=[0x36]),
            lambda r: r.blocks_resent >= 1 and r.restarts == 0,
        ),
        (Faults(delay=0.05), lambda r: True),
        (Faults(pending_storm=4, pending_interval=0.02), lambda r: True),
        (Faults(busy_repeat=3), lambda r: True),
        (Faults(reset_after_blocks=2), lambda r: r.restarts >= 1),
        (Faults(power_loss_after_blocks=2, power_loss_time=0.3), lambda r: r.restarts >= 1),
    ],
    ids=[
        "dropped",
        "dropped-block-ack",
        "delayed",
        "nrc78-storm",
        "nrc21-busy",
        "reset-mid-transfer",
        "power-loss",
    ],
)
def test_transient_faults_are_survived(doip_pair: Any, faults: Faults, check: Any) -> None:
    sim, ecu = doip_pair(faults=faults)
    data = image("5.0.0", 40_000)
    report = Flasher(ecu).install(FlashImage(data, "5.0.0"))
    assert report.outcome is Outcome.INSTALLED, report
    assert check(report), report
    assert sim.ecu.memory.read_active("app", 0, len(data)) == data


def test_pending_storm_longer_than_allowed_fails_clearly(doip_pair: Any) -> None:
    _sim, ecu = doip_pair(
        faults=Faults(pending_storm=40, pending_interval=0.05, pending_services=[0x31])
    )
    ecu = dataclasses.replace(
        ecu,
        timing=dataclasses.replace(
            ecu.timing, max_pending=0.5, transfer_retries=0, restart_attempts=0
        ),
    )
    report = Flasher(ecu).install(FlashImage(image("5.1.0"), "5.1.0"))
    assert report.outcome is not Outcome.INSTALLED
    assert report.error and "timed out" in report.error


def test_wrong_checksum_on_single_bank_leaves_ecu_in_bootloader(doip_pair: Any) -> None:
    sim, ecu = doip_pair(faults=Faults(wrong_checksum=True))
    report = Flasher(ecu).install(FlashImage(image("6.0.0"), "6.0.0"))
    assert report.outcome is Outcome.FAILED
    assert report.error and "check memory" in report.error
    assert sim.ecu.mode == "bootloader"


def test_wrong_checksum_on_dual_bank_keeps_the_old_bank(doip_pair: Any) -> None:
    sim, ecu = doip_pair(faults=Faults(wrong_checksum=True), dual_bank=True)
    report = Flasher(ecu).install(FlashImage(image("6.1.0"), "6.1.0"))
    assert report.outcome is Outcome.UNCHANGED, report
    assert report.version_after == "1.0.0"
    assert sim.ecu.mode == "application"


def test_boot_failure_single_bank_restores_previous_image(doip_pair: Any) -> None:
    sim, ecu = doip_pair(faults=Faults(boot_failure=1))
    previous = FlashImage(image("1.0.0"), "1.0.0")
    report = Flasher(ecu).install(FlashImage(image("7.0.0"), "7.0.0"), previous=previous)
    assert report.outcome is Outcome.RESTORED, report
    assert report.version_after == "1.0.0"
    assert sim.ecu.mode == "application"


def test_boot_failure_dual_bank_ecu_falls_back_itself(doip_pair: Any) -> None:
    _sim, ecu = doip_pair(faults=Faults(boot_failure=1), dual_bank=True)
    report = Flasher(ecu).install(FlashImage(image("7.1.0"), "7.1.0"))
    assert report.outcome is Outcome.UNCHANGED
    assert report.version_after == "1.0.0"


def test_wrong_version_on_dual_bank_switches_bank(doip_pair: Any) -> None:
    sim, ecu = doip_pair(dual_bank=True)
    report = Flasher(ecu).install(FlashImage(image("8.0.0-rc"), "8.0.0"))
    assert report.outcome is Outcome.BANK_SWITCHED, report
    assert report.version_after == "1.0.0"
    assert sim.ecu.memory.active == 0


def test_wrong_security_key_is_a_clear_error_and_harmless(doip_pair: Any) -> None:
    sim, ecu = doip_pair()
    ecu = dataclasses.replace(ecu, security=SecuritySettings(params={"mask": "00000000"}))
    report = Flasher(ecu).install(FlashImage(image("9.0.0"), "9.0.0"))
    assert report.outcome is Outcome.UNCHANGED
    assert (
        report.error
        and "security access denied" in report.error
        and "0x35 invalidKey" in report.error
    )
    assert sim.ecu.memory.read_active("app", 0, 5) == b"1.0.0"


def test_image_larger_than_region_is_refused_before_touching_the_ecu(doip_pair: Any) -> None:
    sim, ecu = doip_pair()
    with pytest.raises(ImageError, match="does not fit region app"):
        Flasher(ecu).install(FlashImage(bytes(REGION.size + 1), "x"))
    assert sim.ecu.last_request == 0.0


def test_unknown_region_is_refused(doip_pair: Any) -> None:
    _sim, ecu = doip_pair()
    with pytest.raises(UnknownEcuError, match="no region 'cal'"):
        Flasher(ecu).install(FlashImage(b"x", "x", region="cal"))


def test_cancel_leaves_a_reflashable_ecu(doip_pair: Any) -> None:
    sim, ecu = doip_pair()
    cancel = threading.Event()

    def progress(step: Progress) -> None:
        if step.phase == "download" and step.done > 10_000:
            cancel.set()

    report = Flasher(ecu).install(
        FlashImage(image("10.0.0", 60_000), "10.0.0"), progress=progress, cancel=cancel
    )
    assert report.outcome is Outcome.CANCELLED
    assert sim.ecu.mode == "bootloader"
    again = Flasher(ecu).install(FlashImage(image("10.0.0", 60_000), "10.0.0"))
    assert again.outcome is Outcome.INSTALLED


def test_install_async_runs_in_a_worker_thread(doip_pair: Any) -> None:
    _sim, ecu = doip_pair()
    report = asyncio.run(Flasher(ecu).install_async(FlashImage(image("11.0.0"), "11.0.0")))
    assert report.outcome is Outcome.INSTALLED


def test_wire_sequence_matches_docs_table(doip_pair: Any) -> None:
    """The requests the ECU sees, in order, are docs/uds.md §1 byte for byte."""
    sim, ecu = doip_pair()
    seen: list[str] = []
    handle = sim.ecu.handle

    def recording(request: bytes, now: float, **kwargs: Any) -> Any:
        seen.append(request.hex().upper())
        return handle(request, now, **kwargs)

    sim.ecu.handle = recording  # type: ignore[method-assign]
    data = image("2.0.0", 0x2000 + 0x2000 + 5)  # three blocks of 0x2000
    report = Flasher(ecu).install(FlashImage(data, "2.0.0"))
    assert report.outcome is Outcome.INSTALLED
    crc = f"{zlib.crc32(data):08X}"
    key = seen[6]
    assert key.startswith("2702") and len(key) == 12
    expected = [
        "22F189",
        "1003",
        "8502",
        "280301",
        "1002",
        "2701",
        key,
        "2EF15A" + b"REDSTONE".hex().upper(),
        "3101FF00" + "44" + "00010000" + "00020000",
        "34" + "00" + "44" + "00010000" + f"{len(data):08X}",
        "3601" + data[:0x2000].hex().upper(),
        "3602" + data[0x2000:0x4000].hex().upper(),
        "3603" + data[0x4000:].hex().upper(),
        "37",
        "31010202" + crc,
        "3101FF01",
        "1101",
        "22F189",
        "1003",
        "3101FF01",
    ]
    assert seen == expected
