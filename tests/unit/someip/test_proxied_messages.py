"""Interface 1.1 (UDS ECUs behind a Sub): byte-exact layouts, round trips, hostile payloads,
and the compatibility of GetInfo between 1.0 and 1.1 peers (docs/someip.md §4.2)."""

from __future__ import annotations

import hashlib

import pytest

from redstone_agent.someip.codec import Writer
from redstone_agent.someip.errors import MalformedPayload
from redstone_agent.someip.interface import (
    INTERFACE_MINOR,
    MAX_PROXIED,
    ProxiedState,
    ResultCode,
    SubState,
)
from redstone_agent.someip.messages import (
    Info,
    MetadataLocation,
    ProxiedImage,
    ProxiedSerial,
    ProxiedStatus,
    ProxiedStatusRequest,
    ProxyInstallRequest,
    ProxyManifestRequest,
    Response,
)

SHA = hashlib.sha256(b"image").digest()
NEW = ProxiedImage("bcm-2.0.bin", "http://10.0.0.1/b", SHA, 4096, "2.0.0", 2)
OLD = ProxiedImage("bcm-1.0.bin", "http://10.0.0.1/a", SHA, 2048, "1.0.0", 1)
BUNDLE = MetadataLocation("http://10.0.0.1/m", SHA, 3000)


def info_1_0() -> bytes:
    """GetInfo's body as a 1.0 Sub sends it: the six fields, nothing after them."""
    return Writer().text("ECU-1").text("hw").text("A").u8(SubState.IDLE).text("v1").text("").done()


def test_info_of_a_1_0_sub_decodes_as_minor_0_without_proxied_ecus() -> None:
    info = Info.decode(info_1_0())
    assert (info.ecu_serial, info.interface_minor, info.proxied) == ("ECU-1", 0, ())


def test_info_1_1_appends_minor_and_serials_after_the_1_0_fields() -> None:
    info = Info("ECU-1", "hw", "A", SubState.IDLE, "v1", "", proxied=("BCM-1", "DCU-2"))
    raw = info.encode()
    assert raw.startswith(info_1_0())
    assert raw[len(info_1_0()) :] == (
        INTERFACE_MINOR.to_bytes(4, "big") + b"\x00\x02" + b"\x00\x05BCM-1" + b"\x00\x05DCU-2"
    )
    assert Info.decode(raw) == info


def test_a_1_0_reader_of_a_1_1_info_sees_its_six_fields() -> None:
    """What a 1.0 Master does: read the six fields, ignore what follows."""
    raw = Info("ECU-1", "hw", "A", SubState.IDLE, "v1", "", proxied=("BCM-1",)).encode()
    old_view = Info.decode(info_1_0() + raw[len(info_1_0()) :])
    assert old_view.ecu_serial == "ECU-1" and old_view.current_target == "v1"


def test_proxy_install_layout() -> None:
    raw = ProxyInstallRequest("BCM-1", BUNDLE, NEW).encode()
    assert raw == (
        b"\x00\x05BCM-1"
        + b"\x00\x11http://10.0.0.1/m"
        + SHA
        + (3000).to_bytes(8, "big")
        + b"\x00\x0bbcm-2.0.bin"
        + b"\x00\x11http://10.0.0.1/b"
        + SHA
        + (4096).to_bytes(8, "big")
        + b"\x00\x052.0.0"
        + b"\x00\x00\x00\x02"
        + b"\x00"
    )


def test_proxied_status_layout() -> None:
    status = ProxiedStatus("B", ProxiedState.FLASHING, 7, "t", "r", "1.0", 5, 10, ResultCode.OK, "")
    assert status.encode() == (
        b"\x00\x01B"
        + b"\x02"
        + b"\x00\x00\x00\x07"
        + b"\x00\x01t\x00\x01r\x00\x031.0"
        + (5).to_bytes(8, "big")
        + (10).to_bytes(8, "big")
        + b"\x00"
        + b"\x00\x00"
    )


@pytest.mark.parametrize(
    "message",
    [
        ProxiedStatusRequest("BCM-1"),
        ProxiedStatusRequest("BCM-1", refresh=True),
        ProxiedSerial("BCM-1"),
        ProxyManifestRequest("BCM-1", b"0123abcd" * 8),
        ProxyInstallRequest("BCM-1", BUNDLE, NEW),
        ProxyInstallRequest("BCM-1", BUNDLE, NEW, previous=OLD),
        ProxiedStatus(
            "BCM-1",
            ProxiedState.ROLLED_BACK,
            1 << 31,
            "bcm-2.0.bin",
            "bcm-1.0.bin",
            "1.0.0",
            1 << 33,
            1 << 34,
            ResultCode.UNKNOWN_ECU,
            "ü detail",
        ),
        Info("E", "h", "B", SubState.READY, "c", "p", proxied=tuple(f"S{i}" for i in range(64))),
    ],
)
def test_round_trip(message: object) -> None:
    raw = message.encode()  # type: ignore[attr-defined]
    assert type(message).decode(raw) == message  # type: ignore[attr-defined]


def _cut(message: object) -> list[bytes]:
    raw: bytes = message.encode()  # type: ignore[attr-defined]
    return [raw[:n] for n in range(len(raw))]


@pytest.mark.parametrize(
    "message",
    [
        ProxiedStatusRequest("BCM-1", refresh=True),
        ProxiedSerial("BCM-1"),
        ProxyManifestRequest("BCM-1", b"abcd"),
        ProxyInstallRequest("BCM-1", BUNDLE, NEW, previous=OLD),
        ProxiedStatus("B", ProxiedState.IDLE, 1, "t", "r", "v", 0, 0, ResultCode.OK, "d"),
    ],
)
def test_every_truncation_is_malformed(message: object) -> None:
    for prefix in _cut(message):
        with pytest.raises(MalformedPayload):
            type(message).decode(prefix)  # type: ignore[attr-defined]


def test_a_truncated_1_1_tail_of_info_is_malformed() -> None:
    """Once a 1.1 tail starts it must be whole: the 1.0 prefix alone is the only short form."""
    raw = Info("E", "h", "A", SubState.IDLE, "", "", proxied=("BCM-1",)).encode()
    for n in range(len(info_1_0()) + 1, len(raw)):
        with pytest.raises(MalformedPayload):
            Info.decode(raw[:n])


def _install(image: bytes, previous: bytes = b"\x00") -> bytes:
    return b"\x00\x01S" + b"\x00\x08http://m" + SHA + (10).to_bytes(8, "big") + image + previous


def _image(target: bytes, url: bytes, length: int, version: bytes) -> bytes:
    return (
        len(target).to_bytes(2, "big")
        + target
        + len(url).to_bytes(2, "big")
        + url
        + SHA
        + length.to_bytes(8, "big")
        + len(version).to_bytes(2, "big")
        + version
        + b"\x00\x00\x00\x01"
    )


HOSTILE = [
    (ProxiedStatusRequest, b"\x00\x00\x00", "serial must not be empty"),
    (ProxiedStatusRequest, b"\x00\x01S\x02", "0 or 1"),
    (ProxiedSerial, b"\x00\x02\xff\xfe", "not UTF-8"),
    (ProxyManifestRequest, b"\x00\x01S\x00\x00\x00\x00", "nonce must not be empty"),
    (ProxyManifestRequest, b"\x00\x01S\x00\x00\x00\x41" + b"n" * 65, "longer than 64"),
    (ProxyManifestRequest, b"\x00\x01S\x00\x00\x00\x01\xff", "ASCII"),
    (ProxyInstallRequest, _install(_image(b"t", b"ftp://m/x", 1, b"1")), "image.url"),
    (ProxyInstallRequest, _install(_image(b"t", b"http://m", 0, b"1")), "image.length"),
    (ProxyInstallRequest, _install(_image(b"t", b"http://m", 1 << 40, b"1")), "image.length"),
    (ProxyInstallRequest, _install(_image(b"t", b"http://m", 1, b"")), "must not be empty"),
    (ProxyInstallRequest, _install(_image(b"", b"http://m", 1, b"1")), "must not be empty"),
    (
        ProxyInstallRequest,
        _install(_image(b"t", b"http://m", 1, b"1"), b"\x07"),
        "has_previous must be 0 or 1",
    ),
    (
        ProxyInstallRequest,
        b"\x00\x01S\x00\x08http://m" + SHA + b"\x00" * 8,
        "metadata.length",
    ),
    (ProxyInstallRequest, b"\x00\x01S\x00\x08file://m" + SHA + b"\x00" * 8, "metadata.url"),
    (ProxiedStatus, b"\x00\x01S\x09", "unknown proxied state 9"),
    (
        ProxiedStatus,
        b"\x00\x01S\x00" + b"\x00" * 4 + b"\x00\x00" * 3 + b"\x00" * 16 + b"\x63\x00\x00",
        "unknown result code 99",
    ),
    (Info, info_1_0() + b"\x00\x00\x00\x01" + (MAX_PROXIED + 1).to_bytes(2, "big"), "exceeds"),
]


@pytest.mark.parametrize(("kind", "payload", "reason"), HOSTILE)
def test_hostile_payloads_are_malformed(kind: type, payload: bytes, reason: str) -> None:
    with pytest.raises(MalformedPayload, match=reason):
        kind.decode(payload)  # type: ignore[attr-defined]


def test_unknown_ecu_is_a_result_code_of_1_1() -> None:
    raw = Response(ResultCode.UNKNOWN_ECU, "no ECU X behind this Sub").encode()
    assert raw[0] == 13
    assert Response.decode(raw).code is ResultCode.UNKNOWN_ECU
