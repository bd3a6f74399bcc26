"""ext4 rootfs images made with mkfs.ext4 -d from two trees that differ like an upgrade."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import require_tool

from .conftest import RunCli, relocated, round_trip

BINARIES = ["ls", "cp", "tar", "gzip", "sed", "grep", "find", "bash", "date", "sort"]


def _tree(root: Path, rng: random.Random) -> None:
    bin_dir, etc, lib = root / "usr/bin", root / "etc", root / "usr/lib/app"
    for folder in (bin_dir, etc, lib):
        folder.mkdir(parents=True)
    for name in BINARIES:
        found = shutil.which(name)
        if found:
            shutil.copyfile(found, bin_dir / name)
    for i in range(40):
        (etc / f"service{i}.conf").write_text(
            "".join(f"option_{j} = {rng.randint(0, 10**6)}\n" for j in range(50))
        )
    for i in range(8):
        (lib / f"data{i}.bin").write_bytes(rng.randbytes(200_000))


def _upgrade(root: Path, rng: random.Random) -> None:
    """Rebuilt binaries, edited configs, a new library, a removed one."""
    for name in BINARIES[:4]:
        path = root / "usr/bin" / name
        if path.exists():
            data = path.read_bytes()
            path.write_bytes(relocated(data, len(data) // 2, rng.randbytes(500)))
    for i in range(0, 40, 5):
        with (root / f"etc/service{i}.conf").open("a") as conf:
            conf.write("new_option = true\n")
    (root / "usr/lib/app/data3.bin").unlink()
    (root / "usr/lib/app/plugin.bin").write_bytes(rng.randbytes(300_000))


def _image(tree: Path, image: Path, mkfs: str) -> None:
    subprocess.run(
        [mkfs, "-q", "-F", "-b", "4096", "-d", str(tree), str(image), "24M"],
        check=True,
        capture_output=True,
    )


@pytest.mark.slow
def test_rootfs_upgrade_round_trip(tmp_path: Path, run_cli: RunCli) -> None:
    mkfs = require_tool("mkfs.ext4")
    rng = random.Random(42)
    v1, v2 = tmp_path / "v1", tmp_path / "v2"
    _tree(v1, rng)
    shutil.copytree(v1, v2)
    _upgrade(v2, rng)
    old, new = tmp_path / "v1.ext4", tmp_path / "v2.ext4"
    _image(v1, old, mkfs)
    _image(v2, new, mkfs)
    delta = round_trip(run_cli, old, new, tmp_path, "--block-size", "256K")
    info = json.loads(run_cli("info", delta, "--ops", "--json").stdout)
    assert {"COPY", "BSDIFF"} <= set(info["ops"])
    # the new plugin (300 kB of fresh random data) dominates: the rest is tiny
    assert delta.stat().st_size < 300_000 + 120_000
