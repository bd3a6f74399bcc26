"""redstone-delta as a process: make/info/apply, stdin streaming, honest errors."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
from pathlib import Path

import pytest

from redstone_agent.delta.format import (
    Codec,
    DeltaHeader,
    OpHeader,
    OpKind,
    encode_header,
    encode_op,
)
from tests.support import require_tool

from .conftest import RunCli, round_trip


def _images(tmp_path: Path) -> tuple[Path, Path]:
    rng = random.Random(5)
    old_data = rng.randbytes(3 << 20)
    new_data = old_data[:100_000] + b"new code" + old_data[100_000:] + bytes(300_000)
    old, new = tmp_path / "old.img", tmp_path / "new.img"
    old.write_bytes(old_data)
    new.write_bytes(new_data)
    return old, new


def test_make_info_apply(tmp_path: Path, run_cli: RunCli) -> None:
    old, new = _images(tmp_path)
    delta = round_trip(run_cli, old, new, tmp_path, "--block-size", "256K")
    assert delta.stat().st_size < 50_000
    info = run_cli("info", delta, "--ops", "--json")
    assert info.returncode == 0
    summary = json.loads(info.stdout)
    assert summary["block_size"] == 256 << 10
    assert summary["target_size"] == new.stat().st_size
    assert sum(summary["ops"].values()) == summary["operations"]
    assert "ZERO" in summary["ops"]


def test_apply_from_stdin_with_known_source_hash(tmp_path: Path, run_cli: RunCli) -> None:
    old, new = _images(tmp_path)
    delta = tmp_path / "d.rsdelta"
    made = run_cli("make", old, new, delta, "--json")
    source_sha = json.loads(made.stdout)["source_sha256"]
    out = tmp_path / "out.img"
    applied = run_cli(
        "apply", "-", old, out, "--source-sha256", source_sha, "--json", stdin=delta.read_bytes()
    )
    assert applied.returncode == 0, applied.stderr
    assert out.read_bytes() == new.read_bytes()
    assert json.loads(applied.stdout)["target_sha256"] == json.loads(made.stdout)["target_sha256"]


def test_wrong_source_is_one_line_error_and_no_output(tmp_path: Path, run_cli: RunCli) -> None:
    old, new = _images(tmp_path)
    delta = tmp_path / "d.rsdelta"
    assert run_cli("make", old, new, delta).returncode == 0
    out = tmp_path / "out.img"
    result = run_cli("apply", delta, new, out)
    assert result.returncode == 1
    lines = result.stderr.decode().strip().splitlines()
    assert lines == [lines[0]] and "error: delta is for a" in lines[0]
    assert not out.exists()
    assert not (tmp_path / "out.img.part").exists()


def test_truncated_delta_leaves_no_output(tmp_path: Path, run_cli: RunCli) -> None:
    old, new = _images(tmp_path)
    delta = tmp_path / "d.rsdelta"
    assert run_cli("make", old, new, delta).returncode == 0
    cut = tmp_path / "cut.rsdelta"
    cut.write_bytes(delta.read_bytes()[:-10])
    result = run_cli("apply", cut, old, tmp_path / "out.img")
    assert result.returncode == 1
    assert b"truncated" in result.stderr
    assert b"Traceback" not in result.stderr
    assert not (tmp_path / "out.img").exists()


def test_user_errors_are_one_line(tmp_path: Path, run_cli: RunCli) -> None:
    for args in (
        ("info", tmp_path / "missing.rsdelta"),
        ("make", tmp_path / "nope", tmp_path / "nope2", tmp_path / "out"),
        ("info", Path(__file__)),
    ):
        result = run_cli(*args)
        assert result.returncode == 1
        assert len(result.stderr.decode().strip().splitlines()) == 1, result.stderr


def test_help_teaches() -> None:
    from redstone_agent.cli.delta import build_parser

    text = build_parser().format_help()
    assert "make" in text and "apply" in text and "info" in text and "docs/delta.md" in text


@pytest.mark.root
def test_apply_writes_a_block_device_in_place(tmp_path: Path, run_cli: RunCli) -> None:
    losetup = require_tool("losetup")
    old, new = _images(tmp_path)
    delta = tmp_path / "d.rsdelta"
    assert run_cli("make", old, new, delta).returncode == 0
    backing = tmp_path / "slot_b.img"
    backing.write_bytes(b"\xff" * (new.stat().st_size + (1 << 20)))
    device = subprocess.run(
        [losetup, "--find", "--show", str(backing)], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        result = run_cli("apply", delta, old, device)
        assert result.returncode == 0, result.stderr
    finally:
        subprocess.run([losetup, "--detach", device], check=True)
    written = backing.read_bytes()
    assert written[: new.stat().st_size] == new.read_bytes()
    assert written[new.stat().st_size :] == b"\xff" * (1 << 20)


def _zero_bomb(source: Path, target_size: int, block: int = 1 << 20, ops: bool = True) -> bytes:
    """ZERO records with their true hashes that build ``target_size`` bytes from ``source``
    (the whole-target hash is wrong, so only the end of the apply would notice)."""
    data = source.read_bytes()
    header = DeltaHeader(block, len(data), hashlib.sha256(data).digest(), target_size, b"\x01" * 32)
    zero = OpHeader(OpKind.ZERO, Codec.NONE, block, 0, hashlib.sha256(bytes(block)).digest())
    return encode_header(header) + (encode_op(zero) * header.op_count if ops else b"")


def _one_line(result: subprocess.CompletedProcess[bytes]) -> str:
    assert result.returncode == 1, result.stderr
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_apply_refuses_a_zero_bomb_larger_than_expected_before_writing(
    tmp_path: Path, run_cli: RunCli
) -> None:
    """Issue 15 item 4: a 45 KB delta of zero blocks with valid hashes wrote 1 GiB before
    failing. With the expected size (the image's signed length) it writes nothing."""
    old, _ = _images(tmp_path)
    bomb = tmp_path / "bomb.rsdelta"
    bomb.write_bytes(_zero_bomb(old, 1 << 30))
    assert bomb.stat().st_size < 46_000
    out = tmp_path / "out.img"
    line = _one_line(run_cli("apply", bomb, old, out, "--expect-size", "4M"))
    assert line.endswith(
        "error: delta would write 1073741824 bytes, more than the 4194304 expected (--expect-size)"
    )
    assert not out.exists()
    assert not (tmp_path / "out.img.part").exists()


def test_apply_refuses_a_different_size_than_expected(tmp_path: Path, run_cli: RunCli) -> None:
    old, new = _images(tmp_path)
    delta = tmp_path / "d.rsdelta"
    assert run_cli("make", old, new, delta).returncode == 0
    expected = str(new.stat().st_size + 1)
    line = _one_line(run_cli("apply", delta, old, tmp_path / "out.img", "--expect-size", expected))
    assert f"not the {expected} expected (--expect-size)" in line
    assert (
        run_cli(
            "apply", delta, old, tmp_path / "out.img", "--expect-size", str(new.stat().st_size)
        ).returncode
        == 0
    )


def test_apply_refuses_a_target_larger_than_the_free_space(tmp_path: Path, run_cli: RunCli) -> None:
    """Without --expect-size the output filesystem's free space bounds a file target."""
    old, _ = _images(tmp_path)
    claim = tmp_path / "claim.rsdelta"
    claim.write_bytes(_zero_bomb(old, 1 << 44, block=16 << 20, ops=False))  # the header alone
    line = _one_line(run_cli("apply", claim, old, tmp_path / "out.img"))
    assert f"delta would write {1 << 44} bytes, more than the " in line
    assert f"bytes free on {tmp_path}" in line
    assert not (tmp_path / "out.img.part").exists()


def test_info_verify_checks_a_delta_against_a_source_writing_nothing(
    tmp_path: Path, run_cli: RunCli
) -> None:
    old, new = _images(tmp_path)
    delta = tmp_path / "d.rsdelta"
    assert run_cli("make", old, new, delta, "--block-size", "256K").returncode == 0
    before = sorted(tmp_path.iterdir())
    result = run_cli("info", delta, "--verify", old, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["verified"] is True
    assert sum(summary["ops"].values()) == summary["operations"]
    assert summary["delta_size"] == delta.stat().st_size
    assert "error: delta is for a" in _one_line(run_cli("info", delta, "--verify", new))
    bomb = tmp_path / "bomb.rsdelta"
    bomb.write_bytes(_zero_bomb(old, 8 << 20))
    assert "target sha256" in _one_line(run_cli("info", bomb, "--verify", old))
    assert sorted(tmp_path.iterdir()) == sorted([*before, bomb])
    assert (
        "verified: True"
        in run_cli("info", "-", "--verify", old, stdin=delta.read_bytes()).stdout.decode()
    )


@pytest.mark.root
def test_apply_refuses_a_target_larger_than_the_device(tmp_path: Path, run_cli: RunCli) -> None:
    losetup = require_tool("losetup")
    old, new = _images(tmp_path)
    delta = tmp_path / "d.rsdelta"
    assert run_cli("make", old, new, delta).returncode == 0
    backing = tmp_path / "small_slot.img"
    backing.write_bytes(b"\xff" * (1 << 20))
    device = subprocess.run(
        [losetup, "--find", "--show", str(backing)], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        line = _one_line(run_cli("apply", delta, old, device))
    finally:
        subprocess.run([losetup, "--detach", device], check=True)
    assert f"more than the {1 << 20} bytes the device {device} holds" in line
    assert backing.read_bytes() == b"\xff" * (1 << 20)
