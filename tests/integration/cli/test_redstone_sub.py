"""``redstone-sub`` as an operator meets it: help, JSON, one-line errors, exit codes."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from redstone_agent.slots.virtual import VirtualNode
from tests.support import require_tool


def sub(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "redstone_agent.cli.sub", *args],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    require_tool("fw_setenv")
    node = VirtualNode.create(tmp_path / "node")
    path = tmp_path / "sub.toml"
    path.write_text(node.config_toml())
    return path


def test_help_teaches_the_cycle() -> None:
    result = sub("--help")
    assert result.returncode == 0
    for word in ("install", "mark-good", "mark-bad", "discard", "acknowledge", "rolled-back"):
        assert word in result.stdout


def test_status_json(config: Path) -> None:
    result = sub("-c", str(config), "status", "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["state"] == "idle" and status["booted"] == "A"
    assert [slot["name"] for slot in status["slots"]] == ["A", "B"]


def test_human_status(config: Path) -> None:
    result = sub("-c", str(config), "status")
    assert result.returncode == 0
    assert "state:   idle" in result.stdout and "slot A:" in result.stdout


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        (None, ("status",), "file not found"),
        ("[slots]\ntries = 3\n", ("status",), "slots.A: missing"),
        (
            '[slots]\ntries = 12\nA = { device = "/a" }\nB = { device = "/b" }\n',
            ("status",),
            "tries: must be between 1 and 9",
        ),
        ("[other]\n", ("status",), "slots: missing (expected a table)"),
    ],
)
def test_config_errors_are_one_line(
    tmp_path: Path, setup: str | None, args: tuple[str, ...], message: str
) -> None:
    path = tmp_path / "sub.toml"
    if setup is not None:
        path.write_text(setup)
    result = sub("-c", str(path), *args)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"redstone-sub: error: {path}")
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_sha256_is_one_line(config: Path) -> None:
    result = sub("-c", str(config), "install", "/dev/null", "--sha256", "xyz")
    assert result.returncode == 1
    assert "expected 64 hexadecimal digits" in result.stderr
    assert "Traceback" not in result.stderr


def test_usage_error_exits_2() -> None:
    result = sub("frobnicate")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_install_then_discard_through_the_cli(config: Path, tmp_path: Path) -> None:
    image = tmp_path / "img"
    image.write_bytes(b"rootfs" * 1000)
    sha = hashlib.sha256(image.read_bytes()).hexdigest()
    installed = sub("-c", str(config), "install", str(image), "--sha256", sha, "--json")
    assert json.loads(installed.stdout)["state"] == "installed", installed.stderr
    discarded = json.loads(sub("-c", str(config), "discard", "--json").stdout)
    assert (discarded["state"], discarded["primary"]) == ("idle", "A")
