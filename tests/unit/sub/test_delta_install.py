"""A delta assignment on a real virtual A/B node: the signed file is the delta, the slot the image.

The director's target is the delta file D (length Ld, sha256 Sd, applies to
S1); the Master's Install names the image R it builds. These tests check that
such a delta installs and the manifest then reports the image, and that delta
bytes other than the signed ones never reach a primed slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import struct
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from redstone_agent.delta.format import EXTENT_SIZE, HEADER_SIZE, OP_FIXED_SIZE, OpKind
from redstone_agent.delta.make import make_delta
from redstone_agent.slots import SlotManager
from redstone_agent.someip.interface import ResultCode, SubState
from redstone_agent.someip.messages import InstallRequest
from redstone_agent.uptane.keys import generate_signer, save_signer
from redstone_agent.uptane.manifests import verify_ecu_manifest
from tests.unit.sub.node_bench import Bench, make_bench
from tests.unit.sub.test_engine import install_ready

S = SubState
BLOCK = 4096


@pytest.fixture
def bench(tmp_path: Path) -> Bench:
    return make_bench(tmp_path)


def delta_between(bench: Bench, old: bytes, new: bytes, *, block_size: int = BLOCK) -> bytes:
    (bench.root / "old.img").write_bytes(old)
    (bench.root / "new.img").write_bytes(new)
    out = bench.root / "made.delta"
    with out.open("wb") as handle:
        make_delta(bench.root / "old.img", bench.root / "new.img", handle, block_size=block_size)
    return out.read_bytes()


def images() -> tuple[bytes, bytes]:
    """v1 holds its first block twice, once unaligned (a COPY can name either); v2 edits it."""
    first = os.urandom(BLOCK)
    v1 = first + os.urandom(1000) + first + os.urandom(100_000)
    v2 = bytearray(v1)
    v2[50_000:50_100] = os.urandom(100)
    v2 += os.urandom(3000)
    return v1, bytes(v2)


def boot_committed(bench: Bench, image: bytes) -> None:
    """Install ``image`` as a full target, boot it and commit it (slot B runs it)."""

    async def install() -> None:
        engine = bench.engine()
        await install_ready(bench, engine, bench.publish("v1.img", image, 1))
        assert engine.state is S.READY, engine.status()
        await engine.activate()
        await asyncio.sleep(0.4)

    async def commit() -> None:
        engine = bench.engine()
        await engine.recover()
        await engine.commit()

    asyncio.run(install())
    assert bench.node.reboot() == "B"
    asyncio.run(commit())


def install_delta(bench: Bench, request: InstallRequest) -> tuple[SubState, ResultCode, str]:
    async def scenario() -> tuple[SubState, ResultCode, str]:
        engine = bench.engine()
        await install_ready(bench, engine, request)
        status = engine.status()
        return status.state, status.error, status.detail

    return asyncio.run(scenario())


def assert_old_slot_kept(bench: Bench, old: str = "B") -> None:
    """The written slot was not primed: the slot layer keeps ``old`` primary and boots it."""
    assert SlotManager(bench.node.config).status().primary == old
    assert bench.node.reboot() == old


def swap_copy_extent(delta: bytes, source: bytes) -> bytes:
    """Another *valid* delta of the same length: one COPY reads an identical source block.

    Every operation still rebuilds the same bytes, so only the delta file's own
    hash can tell it from the signed one.
    """
    data = bytearray(delta)
    op_count = struct.unpack_from("<Q", data, 96)[0]
    position = HEADER_SIZE
    for _ in range(op_count):
        kind, _codec, extents, _length, payload, _sha = struct.unpack_from(
            "<BBHII32s", data, position
        )
        first = position + OP_FIXED_SIZE
        if kind == OpKind.COPY and extents == 1:
            offset, length = struct.unpack_from("<QQ", data, first)
            wanted = source[offset : offset + length]
            other = source.find(wanted, offset + 1)
            other = other if other >= 0 else source.find(wanted)
            if other not in (-1, offset):
                struct.pack_into("<Q", data, first, other)
                return bytes(data)
        position = first + extents * EXTENT_SIZE + payload
    raise AssertionError("no COPY with an identical alternative source block")


@pytest.fixture
def unsized_server() -> Iterator[tuple[str, dict[str, bytes]]]:
    """An HTTP/1.0 server that sends no Content-Length: the Sub cannot see a length upfront."""
    files: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = files.get(self.path.lstrip("/"))
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.end_headers()
            # The Sub stops reading at the signed length and hangs up.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", files
    server.shutdown()
    server.server_close()


def test_delta_installs_commits_and_the_manifest_reports_the_image(bench: Bench) -> None:
    signer = generate_signer()
    save_signer(signer, bench.root / "ecu.key")
    v1, v2 = images()
    boot_committed(bench, v1)
    delta = delta_between(bench, v1, v2)
    assert len(delta) < len(v2) // 2
    request = bench.publish_delta("v2.img.from-v1.rsdelta", delta, v1, v2, 2)

    async def install_and_activate() -> None:
        engine = bench.engine()
        await install_ready(bench, engine, request)
        assert engine.state is S.READY, engine.status()
        assert engine.status().bytes_total == len(v2)
        await engine.activate()
        await asyncio.sleep(0.4)

    async def commit() -> bytes:
        engine = bench.engine()
        await engine.recover()
        assert engine.state is S.VERIFYING, engine.status()
        await engine.commit()
        assert engine.info().current_target == "v2.img.from-v1.rsdelta"
        return engine.manifest("nonce-1")

    asyncio.run(install_and_activate())
    assert bench.node.reboot() == "A"
    manifest = verify_ecu_manifest(
        json.loads(asyncio.run(commit())), signer.public_key, expected_nonce="nonce-1"
    )
    assert (manifest.filename, manifest.sha256, manifest.length, manifest.release_counter) == (
        "v2.img.from-v1.rsdelta",
        hashlib.sha256(v2).hexdigest(),
        len(v2),
        2,
    )
    assert bench.node.reboot() == "A"
    with bench.node.config.A.device.open("rb") as slot:
        assert slot.read(len(v2)) == v2

    # The reported image is the source of the next delta: v2 -> v3 applies on top.
    v3 = v2[:60_000] + os.urandom(2000) + v2[62_000:]
    request = bench.publish_delta("v3.img.from-v2.rsdelta", delta_between(bench, v2, v3), v2, v3, 3)
    assert install_delta(bench, request)[:2] == (S.READY, ResultCode.OK)
    assert bench.node.reboot() == "B"
    with bench.node.config.B.device.open("rb") as slot:
        assert slot.read(len(v3)) == v3


def test_another_valid_delta_with_the_same_length_is_refused_before_priming(
    bench: Bench,
) -> None:
    v1, v2 = images()
    boot_committed(bench, v1)
    delta = delta_between(bench, v1, v2)
    request = bench.publish_delta("v2.rsdelta", delta, v1, v2, 2)
    swapped = swap_copy_extent(delta, v1)
    assert len(swapped) == len(delta) and swapped != delta
    Path(request.url).write_bytes(swapped)  # a compromised Master serves other bytes

    state, error, detail = install_delta(bench, request)

    assert (state, error) == (S.FAILED, ResultCode.VERIFICATION_FAILED), detail
    assert "not the verified" in detail and "\n" not in detail
    assert_old_slot_kept(bench)


def test_a_delta_with_one_byte_flipped_is_refused(bench: Bench) -> None:
    v1, v2 = images()
    boot_committed(bench, v1)
    delta = bytearray(delta_between(bench, v1, v2))
    request = bench.publish_delta("v2.rsdelta", bytes(delta), v1, v2, 2)
    delta[len(delta) // 2] ^= 0x01
    Path(request.url).write_bytes(bytes(delta))

    state, error, detail = install_delta(bench, request)

    assert state is S.FAILED
    assert error in (ResultCode.INSTALL_FAILED, ResultCode.VERIFICATION_FAILED), detail
    assert "\n" not in detail
    assert_old_slot_kept(bench)


def test_a_delta_announcing_more_than_the_signed_length_is_refused_unread(bench: Bench) -> None:
    v1, v2 = images()
    boot_committed(bench, v1)
    delta = delta_between(bench, v1, v2)
    request = bench.publish_delta("v2.rsdelta", delta, v1, v2, 2)
    Path(request.url).write_bytes(delta + b"\x00" * 4096)

    state, error, detail = install_delta(bench, request)

    assert (state, error) == (S.FAILED, ResultCode.VERIFICATION_FAILED), detail
    assert f"the verified file is {len(delta)}" in detail
    assert_old_slot_kept(bench)


def test_a_longer_unsized_delta_is_cut_at_the_signed_length_and_refused(
    bench: Bench, unsized_server: tuple[str, dict[str, bytes]]
) -> None:
    base, files = unsized_server
    v1, v2 = images()
    boot_committed(bench, v1)
    signed = delta_between(bench, v1, v2)
    longer = delta_between(bench, v1, v2, block_size=8 * BLOCK)
    if len(longer) <= len(signed):
        signed, longer = longer, signed
    request = bench.publish_delta("v2.rsdelta", signed, v1, v2, 2)
    files["v2.rsdelta"] = longer
    assert request.delta is not None
    url = f"{base}/v2.rsdelta"
    request = replace(request, url=url, delta=replace(request.delta, url=url))

    state, error, detail = install_delta(bench, request)

    assert state is S.FAILED
    assert error in (ResultCode.INSTALL_FAILED, ResultCode.VERIFICATION_FAILED), detail
    assert_old_slot_kept(bench)


def test_a_request_whose_result_differs_from_the_delta_header_is_refused(bench: Bench) -> None:
    v1, v2 = images()
    boot_committed(bench, v1)
    request = bench.publish_delta("v2.rsdelta", delta_between(bench, v1, v2), v1, v2, 2)
    lying = replace(request, sha256=hashlib.sha256(b"some other image").digest())

    state, error, detail = install_delta(bench, lying)

    assert (state, error) == (S.FAILED, ResultCode.VERIFICATION_FAILED), detail
    assert "delta builds image" in detail
    assert_old_slot_kept(bench)
