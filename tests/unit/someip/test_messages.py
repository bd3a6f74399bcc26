"""Byte-exact layouts of docs/someip.md and rejection of hostile payloads."""

from __future__ import annotations

import hashlib

import pytest

from redstone_agent.someip.codec import Reader, Writer
from redstone_agent.someip.errors import MalformedPayload
from redstone_agent.someip.interface import MAX_PAYLOAD, ResultCode, SubState
from redstone_agent.someip.messages import (
    Blob,
    DeltaInfo,
    Info,
    InstallRequest,
    ManifestRequest,
    MetadataLocation,
    Progress,
    Response,
    Status,
)

SHA = hashlib.sha256(b"image").digest()


def test_install_request_matches_the_documented_example() -> None:
    request = InstallRequest("ecu.img", "http://10.0.0.1/ecu.img", SHA, 1 << 20)
    expected = (
        b"\x00\x07ecu.img"
        + b"\x00\x17http://10.0.0.1/ecu.img"
        + SHA
        + b"\x00\x00\x00\x00\x00\x10\x00\x00"
        + b"\x00"
    )
    assert request.encode() == expected
    assert InstallRequest.decode(expected) == request


def test_response_envelope_layout() -> None:
    raw = Response(ResultCode.WRONG_STATE, "no", b"\x01\x02").encode()
    assert raw == b"\x02\x00\x02no\x01\x02"
    assert Response.decode(raw) == Response(ResultCode.WRONG_STATE, "no", b"\x01\x02")


def test_status_layout() -> None:
    status = Status(SubState.READY, 7, "t", 5, 10, ResultCode.OK, "")
    raw = status.encode()
    assert raw == (
        b"\x03"
        + b"\x00\x00\x00\x07"
        + b"\x00\x01t"
        + (5).to_bytes(8, "big")
        + (10).to_bytes(8, "big")
        + b"\x00"
        + b"\x00\x00"
    )
    assert Status.decode(raw) == status


@pytest.mark.parametrize(
    "message",
    [
        Info("ECU-1", "hw-a", "A", SubState.IDLE, "v1", ""),
        Status(SubState.ROLLED_BACK, 1, "ü-target", 0, 0, ResultCode.BOOT_FALLBACK, "fell back"),
        Progress(3, 1 << 33, 1 << 34),
        ManifestRequest(b"a" * 64),
        MetadataLocation("http://m/bundle.json", SHA, 20_000),
        Blob(b"x" * 1000),
        InstallRequest(
            "t", "https://m/t", SHA, 99, DeltaInfo("http://m/d", SHA, 5, hashlib.sha256().digest())
        ),
    ],
)
def test_round_trip(message: object) -> None:
    raw = message.encode()  # type: ignore[attr-defined]
    assert type(message).decode(raw) == message  # type: ignore[attr-defined]


def test_trailing_bytes_are_ignored_for_minor_version_growth() -> None:
    raw = Progress(1, 2, 3).encode() + b"future field"
    assert Progress.decode(raw) == Progress(1, 2, 3)


HOSTILE = [
    (Status, b"", "truncated in state"),
    (Status, b"\x63" + b"\x00" * 30, "unknown state 99"),
    (Status, b"\x00" + b"\x00" * 4 + b"\x00\x01t" + b"\x00" * 16 + b"\x42\x00\x00", "result code"),
    (InstallRequest, b"\x04\x01" + b"a" * 100, "longer than 1024"),
    (InstallRequest, b"\x00\x02\xff\xfe", "not UTF-8"),
    (InstallRequest, b"\x00\x01t\x00\x01u" + SHA + b"\x00" * 8 + b"\x00", "must be http"),
    (InstallRequest, b"\x00\x01t\x00\x0bhttp://m/tt" + SHA[:10], "truncated in sha256"),
    (InstallRequest, b"\x00\x01t\x00\x0bhttp://m/tt" + SHA + b"\x00" * 8 + b"\x07", "0 or 1"),
    (InstallRequest, b"\x00\x00\x00\x0bhttp://m/tt" + SHA + b"\x00" * 9, "must not be empty"),
    (ManifestRequest, b"\x00\x00\x00\x00", "must not be empty"),
    (ManifestRequest, b"\x00\x00\x00\x41" + b"n" * 65, "longer than 64"),
    (ManifestRequest, b"\x00\x00\x00\x02\xff\xfe", "ASCII"),
    (Blob, b"\xff\xff\xff\xff", "longer than"),
    (MetadataLocation, b"\x00\x05ftp:/" + SHA + b"\x00" * 7 + b"\x01", "http"),
    (MetadataLocation, b"\x00\x08http://m" + SHA + b"\x00" * 8, "bundle length"),
    (MetadataLocation, b"\x00\x08http://m" + SHA + b"\xff" * 8, "bundle length"),
    (Blob, b"\x00\x00\x00\x10abc", "truncated in data"),
    (Response, b"\x63\x00\x00", "unknown result code 99"),
]


@pytest.mark.parametrize(("kind", "payload", "reason"), HOSTILE)
def test_hostile_payloads_are_malformed(kind: type, payload: bytes, reason: str) -> None:
    with pytest.raises(MalformedPayload, match=reason):
        kind.decode(payload)  # type: ignore[attr-defined]


def test_oversized_payload_is_refused_before_parsing() -> None:
    with pytest.raises(MalformedPayload, match="exceeds"):
        Reader(b"\x00" * (MAX_PAYLOAD + 1))


def test_writer_refuses_fields_over_their_limits() -> None:
    with pytest.raises(ValueError, match="longer than"):
        Writer().text("x" * 2000)
    with pytest.raises(ValueError, match="exactly 32"):
        Writer().fixed(b"short", 32)
    with pytest.raises(ValueError, match="exceeds"):
        Writer().fixed(b"x" * (MAX_PAYLOAD + 1), MAX_PAYLOAD + 1).done()
