"""Byte-exact request/response tests of the simulated ECU (no sockets)."""

from __future__ import annotations

import zlib

import pytest

from redstone_agent.ecusim.config import Faults, SimConfig, SimDoIp, SimMemory, SimSecurity
from redstone_agent.ecusim.ecu import SimulatedEcu
from redstone_agent.uds.config import Region

REGION = Region("app", 0x1000, 0x800)
SEED = bytes.fromhex("11223344")
KEY = bytes(a ^ b for a, b in zip(SEED, bytes.fromhex("5a3c9ee1"), strict=True))


def make(**changes: object) -> SimulatedEcu:
    config = SimConfig(
        "t",
        doip=SimDoIp(),
        memory=SimMemory(regions=[REGION], dual_bank=bool(changes.pop("dual", False))),
        security=SimSecurity(params={"mask": "5a3c9ee1"}, lockout=10.0),
        erase_time=0.5,
        **changes,  # type: ignore[arg-type]
    )
    return SimulatedEcu(config, random_bytes=lambda n: SEED[:n])


def ask(ecu: SimulatedEcu, hex_request: str, now: float = 1.0, block: int = 0xFFF) -> list[str]:
    reply = ecu.handle(bytes.fromhex(hex_request), now, max_block_length=block)
    return [payload.hex(" ").upper() for _delay, payload in reply.responses]


def programming(ecu: SimulatedEcu, now: float = 1.0) -> None:
    assert ask(ecu, "10 03", now) == ["50 03 00 32 01 F4"]
    assert ask(ecu, "10 02", now) == ["50 02 00 32 01 F4"]
    assert ask(ecu, "27 01", now) == ["67 01 11 22 33 44"]
    assert ask(ecu, "27 02" + KEY.hex(), now) == ["67 02"]


@pytest.mark.parametrize(
    ("request_hex", "response"),
    [
        ("10 03", "50 03 00 32 01 F4"),
        ("10 02", "7F 10 22"),  # programming only from the extended session
        ("10 05", "7F 10 12"),
        ("10", "7F 10 13"),
        ("3E 00", "7E 00"),
        ("22 F1 89", "62 F1 89 31 2E 30 2E 30 00 00 00 00 00 00 00 00 00 00 00"),
        ("22 F1 86", "62 F1 86 01"),
        ("22 12 34", "7F 22 31"),
        ("27 01", "7F 27 7F"),  # no security access in the default session
        ("2E F1 5A 01 02", "7F 2E 7F"),
        ("31 01 FF 00 44 00 00 10 00 00 00 08 00", "7F 31 7F"),
        ("34 00 44 00 00 10 00 00 00 00 10", "7F 34 7F"),
        ("2F F1 89 00", "7F 2F 11"),  # InputOutputControl: not simulated
    ],
)
def test_default_session_answers(request_hex: str, response: str) -> None:
    assert ask(make(), request_hex) == [response]


def test_tester_present_with_suppress_bit_is_silent() -> None:
    assert ask(make(), "3E 80") == []


def test_security_attempt_counter_and_lockout() -> None:
    ecu = make()
    ask(ecu, "10 03")
    for _ in range(2):
        assert ask(ecu, "27 01") == ["67 01 11 22 33 44"]
        assert ask(ecu, "27 02 00 00 00 00") == ["7F 27 35"]
    assert ask(ecu, "27 01") == ["67 01 11 22 33 44"]
    assert ask(ecu, "27 02 00 00 00 00") == ["7F 27 36"]
    assert ask(ecu, "27 01", now=5.0) == ["7F 27 37"]
    assert ask(ecu, "3E 00", now=9.0) == ["7E 00"]  # keeps the session alive (S3)
    assert ask(ecu, "27 01", now=11.5) == ["67 01 11 22 33 44"]
    assert ask(ecu, "27 02" + KEY.hex(), now=11.5) == ["67 02"]
    assert ask(ecu, "27 01", now=11.6) == ["67 01 00 00 00 00"]  # unlocked: zero seed


def test_key_without_seed_is_a_sequence_error() -> None:
    ecu = make()
    ask(ecu, "10 03")
    assert ask(ecu, "27 02 00 00 00 00") == ["7F 27 24"]


def test_s3_timeout_returns_to_default_and_relocks() -> None:
    ecu = make()
    programming(ecu)
    assert ask(ecu, "22 F1 86", now=3.0) == ["62 F1 86 02"]
    assert ask(ecu, "22 F1 86", now=9.0) == ["62 F1 86 01"]  # more than s3 = 5 s of silence
    assert ask(ecu, "34 00 44 00 00 10 00 00 00 00 10", now=9.1) == ["7F 34 7F"]


def test_erase_answers_pending_then_positive_after_erase_time() -> None:
    ecu = make()
    programming(ecu)
    reply = ecu.handle(bytes.fromhex("31 01 FF 00 44 00 00 10 00 00 00 08 00"), 1.0)
    assert [(d, p.hex(" ").upper()) for d, p in reply.responses] == [
        (0.0, "7F 31 78"),
        (0.5, "71 01 FF 00 00"),
    ]
    assert ecu.mode == "bootloader"
    assert not ecu.memory.banks[0].valid


def test_erase_outside_any_region_is_out_of_range() -> None:
    ecu = make()
    programming(ecu)
    assert ask(ecu, "31 01 FF 00 44 00 00 20 00 00 00 00 10") == ["7F 31 31"]


def download(ecu: SimulatedEcu, data: bytes, block: int, compressed: bool = False) -> list[str]:
    """Erase, request download, send all blocks; the responses of the last step."""
    ask(ecu, "31 01 FF 00 44 00 00 10 00 00 00 08 00")
    dfi = "10" if compressed else "00"
    wire = zlib.compress(data) if compressed else data
    length = f"{len(data):08X}"
    ask(ecu, f"34 {dfi} 44 00 00 10 00 {length}", block=block)
    step = block - 2
    out: list[str] = []
    for i in range(0, len(wire), step):
        counter = (i // step + 1) & 0xFF
        out = ask(ecu, f"36 {counter:02X}" + wire[i : i + step].hex(), block=block)
        assert out == [f"76 {counter:02X}"], (i, out)
    return out


def test_request_download_announces_block_length_and_checks_range() -> None:
    ecu = make()
    programming(ecu)
    assert ask(ecu, "34 00 44 00 00 10 00 00 00 08 01") == ["7F 34 31"]  # one byte too many
    assert ask(ecu, "34 20 44 00 00 10 00 00 00 00 10") == ["7F 34 31"]  # unknown compression
    assert ask(ecu, "34 00 44 00 00 10 00 00 00 00 10") == ["7F 34 70"]  # not erased
    ask(ecu, "31 01 FF 00 44 00 00 10 00 00 00 08 00")
    assert ask(ecu, "34 00 44 00 00 10 00 00 00 00 10") == ["74 20 0F FF"]
    assert ask(ecu, "34 00 44 00 00 10 00 00 00 00 10", block=0x10002) == ["74 40 00 01 00 02"]


def test_block_counter_wraps_and_repeats_are_idempotent() -> None:
    ecu = make()
    programming(ecu)
    data = bytes(range(256)) * 2 + b"tail"  # 516 bytes, 2 per block → 258 blocks, counter wraps
    download(ecu, data, block=4)
    assert ecu.download is not None and ecu.download.expected == 0x03
    assert ask(ecu, "36 02 FF FF", block=4) == ["76 02"]  # repeat of the last block: ignored
    assert ask(ecu, "36 05 00 00", block=4) == ["7F 36 73"]
    assert ask(ecu, "37") == ["77"]
    assert ecu.memory.banks[0].cells["app"][: len(data)] == data


def test_transfer_exit_before_all_data_is_a_sequence_error() -> None:
    ecu = make()
    programming(ecu)
    ask(ecu, "31 01 FF 00 44 00 00 10 00 00 00 08 00")
    ask(ecu, "34 00 44 00 00 10 00 00 00 00 10")
    assert ask(ecu, "36 01 AA BB") == ["76 01"]
    assert ask(ecu, "37") == ["7F 37 24"]
    assert ask(ecu, "36 02" + "00" * 20) == ["7F 36 71"]  # more than announced


def test_transfer_data_without_download_and_oversized_block() -> None:
    ecu = make()
    programming(ecu)
    assert ask(ecu, "36 01 00") == ["7F 36 24"]
    ask(ecu, "31 01 FF 00 44 00 00 10 00 00 00 08 00")
    ask(ecu, "34 00 44 00 00 10 00 00 00 00 10", block=6)
    assert ask(ecu, "36 01 00 00 00 00 00", block=6) == ["7F 36 13"]


def test_compressed_download_and_checks_make_the_application_valid() -> None:
    ecu = make()
    programming(ecu)
    data = b"2.0.0".ljust(16, b"\0") + bytes(1000)
    download(ecu, data, block=0x102, compressed=True)
    assert ask(ecu, "37") == ["77"]
    crc = zlib.crc32(data).to_bytes(4, "big").hex()
    assert ask(ecu, "31 01 02 02 DE AD BE EF") == ["71 01 02 02 01"]
    assert ask(ecu, "31 01 FF 01") == ["71 01 FF 01 01"]  # checksum failed: not valid
    assert ask(ecu, "31 01 02 02" + crc) == ["71 01 02 02 00"]
    assert ask(ecu, "31 01 FF 01") == ["71 01 FF 01 00"]
    assert ask(ecu, "11 01") == ["51 01"]
    ecu.reset(2.0)
    assert ecu.mode == "application"
    assert ask(ecu, "22 F1 89", now=3.0)[0].startswith("62 F1 89 32 2E 30 2E 30")


def test_wrong_checksum_fault_fails_the_check() -> None:
    ecu = make(faults=Faults(wrong_checksum=True))
    programming(ecu)
    data = bytes(16)
    download(ecu, data, block=0x12)
    ask(ecu, "37")
    assert ask(ecu, "31 01 02 02" + zlib.crc32(data).to_bytes(4, "big").hex()) == ["71 01 02 02 01"]


def test_dual_bank_flashes_the_inactive_bank_and_switches_back() -> None:
    ecu = make(dual=True)
    programming(ecu)
    data = b"2.0.0".ljust(16, b"\0")
    download(ecu, data, block=0x12)
    ask(ecu, "37")
    ask(ecu, "31 01 02 02" + zlib.crc32(data).to_bytes(4, "big").hex())
    assert ask(ecu, "31 01 FF 01") == ["71 01 FF 01 00"]
    assert ecu.memory.active == 0 and ecu.memory.pending == 1
    ecu.reset(2.0)
    assert ask(ecu, "22 FD 00", now=3.0) == ["62 FD 00 01"]
    programming(ecu, now=3.0)
    assert ask(ecu, "31 01 FF 02", now=3.0) == ["71 01 FF 02 00"]
    ecu.reset(4.0)
    assert ask(ecu, "22 FD 00", now=5.0) == ["62 FD 00 00"]


def test_switch_bank_on_single_bank_ecu_is_out_of_range() -> None:
    ecu = make()
    programming(ecu)
    assert ask(ecu, "31 01 FF 02") == ["7F 31 31"]


def test_power_loss_fault_silences_the_ecu_and_forgets_the_session() -> None:
    ecu = make(faults=Faults(power_loss_after_blocks=1, power_loss_time=2.0))
    programming(ecu)
    ask(ecu, "31 01 FF 00 44 00 00 10 00 00 00 08 00")
    ask(ecu, "34 00 44 00 00 10 00 00 00 00 10")
    reply = ecu.handle(bytes.fromhex("36 01 AA"), 1.0)
    assert reply.responses == [] and reply.power_loss == 2.0
    assert ask(ecu, "3E 00", now=2.0) == []
    assert ask(ecu, "22 F1 86", now=3.5) == ["62 F1 86 01"]
    assert ecu.mode == "bootloader"  # the erased application cannot start


def test_pending_storm_precedes_the_final_answer() -> None:
    ecu = make(faults=Faults(pending_storm=3, pending_interval=0.1, pending_services=[0x3E]))
    reply = ecu.handle(bytes.fromhex("3E 00"), 1.0)
    assert [(d, p.hex()) for d, p in reply.responses] == [(0.1, "7f3e78")] * 3 + [(0.0, "7e00")]


def test_busy_fault_answers_0x21_first() -> None:
    ecu = make(faults=Faults(busy_repeat=1))
    programming(ecu)
    ask(ecu, "31 01 FF 00 44 00 00 10 00 00 00 08 00")
    assert ask(ecu, "34 00 44 00 00 10 00 00 00 00 10") == ["7F 34 21"]
    assert ask(ecu, "34 00 44 00 00 10 00 00 00 00 10") == ["74 20 0F FF"]
