"""Fixtures for delta integration tests: real images on disk and the real redstone-delta CLI."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

RunCli = Callable[..., subprocess.CompletedProcess[bytes]]


@pytest.fixture
def run_cli() -> RunCli:
    """Run ``redstone-delta`` as its own process, the way operators do."""

    def run(*args: str | Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        command = [sys.executable, "-m", "redstone_agent.cli.delta", *map(str, args)]
        return subprocess.run(command, input=stdin, capture_output=True, timeout=240, check=False)

    return run


def round_trip(run_cli: RunCli, old: Path, new: Path, work: Path, *extra: str) -> Path:
    """make + apply through the CLI; returns the delta path after checking the result."""
    delta, rebuilt = work / "image.rsdelta", work / "rebuilt.img"
    made = run_cli("make", old, new, delta, "--jobs", "2", *extra)
    assert made.returncode == 0, made.stderr.decode()
    applied = run_cli("apply", delta, old, rebuilt)
    assert applied.returncode == 0, applied.stderr.decode()
    assert rebuilt.read_bytes() == new.read_bytes()
    return delta


def relocated(elf: bytes, at: int, inserted: bytes) -> bytes:
    """A "next version" of a binary: code inserted at ``at``, pointers past it shifted.

    This is what a small source change does to a linked binary: everything
    after the change moves, and every absolute address or offset that points
    past it changes by the same amount.
    """
    shift = len(inserted)
    at -= at % 8
    moved = elf[:at] + inserted + elf[at:]
    whole = len(moved) - len(moved) % 8
    words = bytearray(moved[:whole])
    view = memoryview(words).cast("Q")
    for i in range(len(view)):
        if at <= view[i] < len(elf):
            view[i] += shift
    view.release()
    return bytes(words) + moved[whole:]
