"""Fuzz the UDS simulator's request parser (ecusim/ecu.py): every request gets a well-formed answer.

Properties: any sequence of requests — random bytes, known services with
random operands, and the real programming sequence interleaved with garbage —
is answered only with ``sid+0x40 ...`` or ``7F sid NRC`` (nothing else, no
exception), flash and download state stay within their bounds; and
flashing any image through the real sequence (plain or zlib) installs
exactly that image.
"""

from __future__ import annotations

import zlib

from hypothesis import example, given
from hypothesis import strategies as st

from redstone_agent.ecusim.config import SimConfig, SimDoIp, SimMemory, SimSecurity
from redstone_agent.ecusim.ecu import POSITIVE, SimulatedEcu
from redstone_agent.uds.config import Region
from tests.fuzz.profile import fuzz

REGIONS = [Region("app", 0x1000, 0x400), Region("cal", 0x8000, 0x100)]
SEED = bytes.fromhex("11223344")
KEY = bytes(a ^ b for a, b in zip(SEED, bytes.fromhex("5a3c9ee1"), strict=True))
BLOCK = 0x82  # maxNumberOfBlockLength: 128 data bytes per TransferData

PROGRAMMING = [
    bytes.fromhex("1003"),
    bytes.fromhex("1002"),
    bytes.fromhex("2701"),
    bytes.fromhex("2702") + KEY,
]
ERASE_APP = bytes.fromhex("3101FF00 44 00001000 00000400")


def make(dual: bool) -> SimulatedEcu:
    config = SimConfig(
        "fuzz",
        doip=SimDoIp(),
        memory=SimMemory(regions=REGIONS, dual_bank=dual),
        security=SimSecurity(params={"mask": "5a3c9ee1"}, lockout=10.0),
        erase_time=0.5,
    )
    return SimulatedEcu(config, random_bytes=lambda n: SEED[:n])


def exchange(ecu: SimulatedEcu, request: bytes, now: float) -> list[bytes]:
    """One request as a transport delivers it; checks the reply's shape and the ECU's state."""
    reply = ecu.handle(request, now, max_block_length=BLOCK)
    answers = [payload for _delay, payload in reply.responses]
    for payload in answers:
        assert payload, "empty response payload"
        sid = request[0]
        if payload[0] == 0x7F:
            assert len(payload) == 3 and payload[1] == sid, payload.hex()
        else:
            assert payload[0] == (sid + POSITIVE) & 0xFF, payload.hex()
    for delay, _ in reply.responses:
        assert 0 <= delay < 60
    if reply.reset:
        ecu.reset(now)
    download = ecu.download
    if download is not None:
        assert 0 <= download.received <= download.size
        assert download.offset + download.size <= download.region.size
    for bank in ecu.memory.banks:
        assert {name: len(cells) for name, cells in bank.cells.items()} == {
            r.name: r.size for r in REGIONS
        }
    return answers


known_sids = st.sampled_from(
    [0x10, 0x11, 0x22, 0x27, 0x28, 0x2E, 0x31, 0x34, 0x36, 0x37, 0x3E, 0x85]
)
region_records = st.builds(
    lambda fmt, addr, size: bytes([fmt]) + addr + size,
    st.sampled_from([0x44, 0x24, 0x42, 0x11, 0x00, 0x55, 0xFF]),
    st.sampled_from([b"\x00\x00\x10\x00", b"\x00\x00\x80\x00", b"\x00\x00\x13\xff", b"\xff\xff"]),
    st.sampled_from([b"\x00\x00\x04\x00", b"\x00\x00\x00\x01", b"\x00\x00", b"\xff\xff\xff\xff"]),
)
requests = st.one_of(
    st.binary(min_size=1, max_size=12),
    st.builds(lambda sid, tail: bytes([sid]) + tail, known_sids, st.binary(max_size=10)),
    st.sampled_from(PROGRAMMING + [ERASE_APP, bytes.fromhex("1101"), bytes.fromhex("3701")]),
    st.builds(lambda r: bytes.fromhex("3101FF00") + r, region_records),
    st.builds(
        lambda fmt, r: bytes([0x34, fmt]) + r,
        st.sampled_from([0x00, 0x10, 0x20, 0x01]),
        region_records,
    ),
    st.builds(
        lambda counter, data: bytes([0x36, counter]) + data,
        st.integers(0, 3),
        st.binary(max_size=BLOCK + 4),
    ),
    st.builds(lambda crc: bytes.fromhex("31010202") + crc, st.binary(min_size=3, max_size=5)),
    st.sampled_from(
        [bytes.fromhex("3101FF01"), bytes.fromhex("3101FF02"), bytes.fromhex("22F189F186FD00")]
    ),
)


@fuzz(300)
@given(
    st.booleans(),
    st.booleans(),
    st.lists(st.tuples(requests, st.sampled_from([0.0, 0.01, 1.0, 6.0])), max_size=30),
)
@example(
    False,
    True,
    [(bytes.fromhex("34 00 44 00001000 00000400"), 0.0), (bytes([0x36, 1]) + bytes(200), 0.0)],
)
def test_any_request_sequence_gets_only_well_formed_answers(
    dual: bool, unlock_first: bool, steps: list[tuple[bytes, float]]
) -> None:
    ecu = make(dual)
    now = 1.0
    if unlock_first:
        for request in PROGRAMMING:
            exchange(ecu, request, now)
    for request, dt in steps:
        now += dt
        exchange(ecu, request, now)


@fuzz(60)
@given(st.booleans(), st.booleans(), st.binary(min_size=1, max_size=0x400))
@example(False, True, bytes(0x400))
def test_flashing_any_image_installs_exactly_it(dual: bool, compress: bool, image: bytes) -> None:
    ecu = make(dual)
    now = 1.0
    for request in PROGRAMMING + [ERASE_APP]:
        assert exchange(ecu, request, now)[-1][0] != 0x7F
    payload = zlib.compress(image) if compress else image
    size = len(image).to_bytes(4, "big")
    answer = exchange(
        ecu, bytes([0x34, 0x10 if compress else 0x00, 0x44, 0, 0, 0x10, 0]) + size, now
    )
    assert answer == [bytes([0x74, 0x20, 0, BLOCK])]
    chunk = BLOCK - 2
    for counter, at in enumerate(range(0, len(payload), chunk), start=1):
        block = bytes([0x36, counter & 0xFF]) + payload[at : at + chunk]
        assert exchange(ecu, block, now) == [bytes([0x76, counter & 0xFF])]
    assert exchange(ecu, b"\x37", now) == [b"\x77"]
    crc = zlib.crc32(image).to_bytes(4, "big")
    assert exchange(ecu, bytes.fromhex("31010202") + crc, now) == [bytes.fromhex("7101020200")]
    assert exchange(ecu, bytes.fromhex("3101FF01"), now) == [bytes.fromhex("7101FF0100")]
    exchange(ecu, bytes.fromhex("1101"), now)
    assert ecu.memory.read_active("app", 0, len(image)) == image
