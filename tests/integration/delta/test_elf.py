"""Real ELF binaries with relocation-style changes: small deltas, exact round trips."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import require_tool

from .conftest import RunCli, relocated, round_trip

LIBRARY_CANDIDATES = [
    Path("/usr/lib/x86_64-linux-gnu/libcrypto.so.3"),
    Path("/usr/lib/x86_64-linux-gnu/libstdc++.so.6"),
    Path("/usr/bin/python3.11"),
]


def _real_elf() -> Path:
    for path in LIBRARY_CANDIDATES:
        if path.exists() and path.resolve().read_bytes()[:4] == b"\x7fELF":
            return path.resolve()
    pytest.skip("no large ELF library on this machine")


@pytest.mark.slow
def test_relocated_library_delta_beats_zstd_patch_from(tmp_path: Path, run_cli: RunCli) -> None:
    zstd = require_tool("zstd")
    old = tmp_path / "old.so"
    shutil.copyfile(_real_elf(), old)
    data = old.read_bytes()
    patch = random.Random(3).randbytes(3000)
    new_data = relocated(data, len(data) // 3, patch)
    new = tmp_path / "new.so"
    new.write_bytes(new_data)
    delta = round_trip(run_cli, old, new, tmp_path)
    zpatch = tmp_path / "z.patch"
    subprocess.run(
        [zstd, "-q", "-19", "--long=27", f"--patch-from={old}", str(new), "-o", str(zpatch)],
        check=True,
    )
    assert delta.stat().st_size < zpatch.stat().st_size
    assert delta.stat().st_size < len(new_data) // 20


def test_elf_header_edit_round_trip(tmp_path: Path, run_cli: RunCli) -> None:
    source = _real_elf().read_bytes()[: 3 << 20]
    old, new = tmp_path / "old", tmp_path / "new"
    old.write_bytes(source)
    edited = bytearray(source)
    edited[24:32] = (0x401000).to_bytes(8, "little")  # new entry point
    edited[-100_000:] = bytes(100_000)  # a section emptied
    new.write_bytes(bytes(edited))
    delta = round_trip(run_cli, old, new, tmp_path, "--block-size", "128K")
    assert delta.stat().st_size < 5000
