"""Byte-exact tests of the simulated ECU's fault memory: 0x19, 0x14, identification DIDs."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from redstone_agent.cli.ecusim import apply_overrides, build_parser
from redstone_agent.config import ConfigError, from_dict
from redstone_agent.ecusim.config import (
    Faults,
    SimConfig,
    SimDiagnostics,
    SimDoIp,
    SimDtc,
    SimMemory,
    SimSecurity,
    load_sim,
)
from redstone_agent.ecusim.ecu import SimulatedEcu
from redstone_agent.uds.config import Region

EXAMPLES = Path(__file__).resolve().parents[3] / "etc" / "redstone" / "ecus"
REGION = Region("app", 0x1000, 0x800)
SEED = bytes.fromhex("11223344")
KEY = bytes(a ^ b for a, b in zip(SEED, bytes.fromhex("5a3c9ee1"), strict=True))
STORED = [SimDtc(0xC14000, 0x28), SimDtc(0x912311, 0x09), SimDtc(0x400102, 0x04)]


def make(
    stored: list[SimDtc] = STORED, availability: int = 0xFF, after_flash: list[int] | None = None
) -> SimulatedEcu:
    config = SimConfig(
        "t",
        doip=SimDoIp(),
        memory=SimMemory(regions=[REGION]),
        security=SimSecurity(params={"mask": "5a3c9ee1"}),
        diagnostics=SimDiagnostics(dtcs=stored, availability_mask=availability),
        faults=Faults(dtcs_after_flash=after_flash or []),
        erase_time=0.0,
    )
    return SimulatedEcu(config, random_bytes=lambda n: SEED[:n])


def ask(ecu: SimulatedEcu, hex_request: str, now: float = 1.0) -> list[str]:
    reply = ecu.handle(bytes.fromhex(hex_request), now)
    return [payload.hex(" ").upper() for _delay, payload in reply.responses]


@pytest.mark.parametrize(
    ("request_hex", "response"),
    [
        ("19 02 09", "59 02 FF 91 23 11 09 C1 40 00 28"),  # testFailed | confirmedDTC
        ("19 02 01", "59 02 FF 91 23 11 09"),
        ("19 02 04", "59 02 FF 40 01 02 04"),
        ("19 02 FF", "59 02 FF 40 01 02 04 91 23 11 09 C1 40 00 28"),
        ("19 02 80", "59 02 FF"),  # nothing matches: no records
        ("19 01 09", "59 01 FF 01 00 02"),  # count, ISO 14229-1 DTC format
        ("19 0A", "59 0A FF 40 01 02 04 91 23 11 09 C1 40 00 28"),
        ("19", "7F 19 13"),
        ("19 02", "7F 19 13"),
        ("19 02 09 00", "7F 19 13"),
        ("19 0A 00", "7F 19 13"),
        ("19 03", "7F 19 12"),  # reportDTCSnapshotIdentification: not simulated
        ("19 82 09", "7F 19 12"),  # 0x19 has no suppress bit
        ("14 FF FF", "7F 14 13"),
        ("14 FF FF FF 00", "7F 14 13"),
        ("14 12 34 56", "7F 14 31"),  # no such DTC
    ],
)
def test_fault_memory_answers(request_hex: str, response: str) -> None:
    assert ask(make(), request_hex) == [response]


def test_clear_one_dtc_then_all() -> None:
    ecu = make()
    assert ask(ecu, "14 91 23 11") == ["54"]
    assert ask(ecu, "19 02 09") == ["59 02 FF C1 40 00 28"]
    assert ask(ecu, "14 91 23 11") == ["54"]  # still a supported DTC: clearing again is fine
    assert ask(ecu, "14 FF FF FF") == ["54"]
    assert ask(ecu, "19 02 FF") == ["59 02 FF"]
    assert ask(ecu, "19 01 FF") == ["59 01 FF 01 00 00"]
    assert ask(ecu, "19 0A") == ["59 0A FF 40 01 02 00 91 23 11 00 C1 40 00 00"]


def test_availability_mask_hides_unsupported_status_bits() -> None:
    ecu = make(availability=0x09)
    assert ask(ecu, "19 02 FF") == ["59 02 09 91 23 11 09 C1 40 00 08"]
    assert ask(ecu, "19 02 04") == ["59 02 09"]  # pendingDTC is not supported


def test_fault_memory_belongs_to_the_application() -> None:
    ecu = make()
    ask(ecu, "10 03")
    assert ask(ecu, "19 02 09")[0].startswith("59 02")  # extended session: fine
    assert ask(ecu, "10 02") == ["50 02 00 32 01 F4"]  # into the bootloader
    assert ask(ecu, "19 02 09") == ["7F 19 11"]
    assert ask(ecu, "14 FF FF FF") == ["7F 14 11"]


def flash(ecu: SimulatedEcu, version: bytes, now: float = 1.0) -> None:
    """The programming sequence byte by byte, up to and including the reset."""
    data = version.ljust(16, b"\0") + bytes(48)
    for request in ("10 03", "10 02", "27 01", "27 02" + KEY.hex()):
        ask(ecu, request, now)
    assert ask(ecu, "31 01 FF 00 44 00 00 10 00 00 00 08 00", now) == ["71 01 FF 00 00"]
    assert ask(ecu, "34 00 44 00 00 10 00 00 00 00 40", now) == ["74 20 0F FF"]
    assert ask(ecu, "36 01" + data.hex(), now) == ["76 01"]
    assert ask(ecu, "37", now) == ["77"]
    assert ask(ecu, "31 01 02 02" + zlib.crc32(data).to_bytes(4, "big").hex(), now)[0].endswith(
        "00"
    )
    assert ask(ecu, "31 01 FF 01", now) == ["71 01 FF 01 00"]
    assert ask(ecu, "11 01", now) == ["51 01"]
    ecu.reset(now)


def test_a_freshly_flashed_image_sets_its_dtcs_when_it_starts() -> None:
    ecu = make(after_flash=[0x9A0B1C, 0x912311])
    assert ask(ecu, "14 9A 0B 1C") == ["54"]  # known before it ever failed
    flash(ecu, b"2.0.0")
    # new DTC 0x9A0B1C; 0x912311 gains the bits of an active fault (0x09 | 0x2F)
    assert ask(ecu, "19 02 09", now=2.0) == ["59 02 FF 91 23 11 2F 9A 0B 1C 2F C1 40 00 28"]
    assert ask(ecu, "14 9A 0B 1C", now=2.0) == ["54"]
    ecu.reset(3.0)  # a plain restart is no new image: nothing comes back
    assert ask(ecu, "19 02 01", now=4.0) == ["59 02 FF 91 23 11 2F"]


def test_a_failed_boot_sets_no_dtc() -> None:
    config = make(after_flash=[0x9A0B1C]).config
    faults = Faults(dtcs_after_flash=[0x9A0B1C], boot_failure=1)
    ecu = SimulatedEcu(
        SimConfig(
            "t",
            doip=config.doip,
            memory=config.memory,
            security=config.security,
            diagnostics=config.diagnostics,
            faults=faults,
            erase_time=0.0,
        ),
        random_bytes=lambda n: SEED[:n],
    )
    flash(ecu, b"2.0.0")
    assert ecu.mode == "bootloader"
    assert ecu.fault_memory.status[0x9A0B1C] == 0


@pytest.mark.parametrize(
    ("request_hex", "response"),
    [
        ("22 F1 95", "62 F1 95 " + b"ECUSIM-1.0".hex(" ").upper()),
        (
            "22 F1 89 F1 95",
            "62 F1 89 31 2E 30 2E 30" + " 00" * 11 + " F1 95 " + b"ECUSIM-1.0".hex(" ").upper(),
        ),
        ("22 F1 94", "7F 22 31"),
    ],
)
def test_identification_dids(request_hex: str, response: str) -> None:
    assert ask(make(), request_hex) == [response]


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ({"diagnostics": {"dtcs": [{"code": 0}]}}, "3-byte code other than 0"),
        ({"diagnostics": {"dtcs": [{"code": 0x1000000}]}}, "3-byte code"),
        ({"diagnostics": {"dtcs": [{"code": 1, "status": 0x100}]}}, "status must be"),
        ({"diagnostics": {"availability-mask": 0}}, "availability-mask"),
        ({"diagnostics": {"dids": {"F1G5": "x"}}}, "is not a DID"),
        ({"diagnostics": {"dids": {"0xF189": "x"}}}, "already the version"),
        ({"faults": {"dtcs-after-flash": [0]}}, "3-byte code"),
    ],
)
def test_bad_diagnostics_config_is_refused(table: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        from_dict({"name": "t", "doip": {}} | table, SimConfig)


def test_example_configs_carry_stored_dtcs() -> None:
    for name in ("sim-bcm.toml", "sim-gateway.toml"):
        sim = load_sim(EXAMPLES / name)
        assert len(sim.diagnostics.dtcs) >= 2, name
        assert 0xF195 in sim.diagnostics.did_values()


def test_cli_fault_sets_dtcs_after_flash() -> None:
    args = build_parser().parse_args(
        [str(EXAMPLES / "sim-gateway.toml"), "--fault", "dtcs_after_flash=[0x9A0B1C]"]
    )
    config = apply_overrides(load_sim(args.config), args)
    assert config.faults.dtcs_after_flash == [0x9A0B1C]
    assert [d.code for d in config.diagnostics.dtcs] == [0xC07300, 0xC10100]
