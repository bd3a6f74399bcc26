"""The I/O half's rules that need no network: bounded reads, session set-up."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import urllib3

from redstone_agent.cloud.config import CloudConfig
from redstone_agent.cloud.errors import CloudProtocolError, CloudTlsError
from redstone_agent.cloud.http import USER_AGENT, make_session, read_capped

VIN = "RSTEST00000000001"
WHERE = "GET /api/v1/device/poll"


def answer(body: bytes, **headers: str) -> tuple[urllib3.HTTPResponse, io.BytesIO]:
    stream = io.BytesIO(body)
    names = {k.replace("_", "-"): v for k, v in headers.items()}
    return urllib3.HTTPResponse(body=stream, headers=names, preload_content=False), stream


def test_reads_a_body_within_the_limit() -> None:
    raw, _ = answer(b"x" * 1000)
    assert read_capped(WHERE, raw, 1000, 5.0, truncate=False) == b"x" * 1000


def test_endless_body_stops_one_byte_past_the_limit() -> None:
    raw, stream = answer(b"x" * 10_000_000)
    with pytest.raises(CloudProtocolError, match="exceeds the 1000-byte limit"):
        read_capped(WHERE, raw, 1000, 5.0, truncate=False)
    assert stream.tell() == 1001


def test_declared_oversize_is_refused_before_reading() -> None:
    raw, stream = answer(b"x" * 10, Content_Length="999999")
    with pytest.raises(CloudProtocolError, match="exceeds the 1000-byte limit"):
        read_capped(WHERE, raw, 1000, 5.0, truncate=False)
    assert stream.tell() == 0


def test_error_bodies_are_cut_not_refused() -> None:
    raw, stream = answer(b"e" * 50_000, Content_Length="50000")
    assert read_capped(WHERE, raw, 4096, 5.0, truncate=True) == b"e" * 4096
    assert stream.tell() <= 4097


def test_compressed_answers_are_refused() -> None:
    """The cap counts wire bytes; a decompressed bomb could be a thousand times larger."""
    raw, _ = answer(b"\x1f\x8b...", Content_Encoding="gzip")
    with pytest.raises(CloudProtocolError, match="answer is gzip-encoded; identity was asked"):
        read_capped(WHERE, raw, 1000, 5.0, truncate=False)


def test_session_carries_the_vehicle_identity(tmp_path: Path) -> None:
    for name in ("c.pem", "k.pem", "ca.pem"):
        (tmp_path / name).write_text("pem")
    config = CloudConfig(
        "https://ota.example.com",
        VIN,
        cert=tmp_path / "c.pem",
        key=tmp_path / "k.pem",
        ca=tmp_path / "ca.pem",
    )
    session = make_session(config)
    assert session.cert == (str(tmp_path / "c.pem"), str(tmp_path / "k.pem"))
    assert session.verify == str(tmp_path / "ca.pem")
    assert session.trust_env is False, "no CA bundle or proxy from the environment"
    assert session.headers["User-Agent"] == USER_AGENT
    session.close()
    plain = make_session(CloudConfig("https://ota.example.com", VIN))
    assert (plain.cert, plain.verify) == (None, True)
    plain.close()


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("ca.pem", "CA bundle {}/ca.pem: no such file"),
        ("c.pem", "client certificate {}/c.pem: no such file"),
        ("k.pem", "client key {}/k.pem: no such file"),
    ],
)
def test_missing_tls_files_are_named(tmp_path: Path, missing: str, message: str) -> None:
    for name in ("c.pem", "k.pem", "ca.pem"):
        if name != missing:
            (tmp_path / name).write_text("pem")
    config = CloudConfig(
        "https://ota.example.com",
        VIN,
        cert=tmp_path / "c.pem",
        key=tmp_path / "k.pem",
        ca=tmp_path / "ca.pem",
    )
    with pytest.raises(CloudTlsError) as failed:
        make_session(config)
    assert str(failed.value) == message.format(tmp_path)
