"""SIGKILL the installing process at many instants: the node must always boot safely.

After every cut the bootloader (driven through the real env tool) must start
either the old slot or a new slot whose bytes are the verified image — never
a half-written one — and the next look at the node must settle the journal.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from redstone_agent.slots import NodeState, SlotManager
from redstone_agent.slots.virtual import VirtualNode
from tests.integration.slots.conftest import make_image, slot_sha256
from tests.support import require_tool

CUTS = 24
IMAGE_SIZE = 24 << 20


def start_install(config: Path, image: Path, sha256: str) -> subprocess.Popen[bytes]:
    command = ["-m", "redstone_agent.cli.sub", "-c", str(config), "install", str(image)]
    return subprocess.Popen(
        [sys.executable, *command, "--sha256", sha256],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        start_new_session=True,  # so the cut also takes down a running fw_setenv
    )


def wait_until_installing(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stderr is not None
    for line in proc.stderr:
        if b"installing" in line:
            return
    raise AssertionError("install never started")


def wait_for_group_exit(pgid: int, timeout: float = 10.0) -> None:
    """Power is off only when every process of the install (fw_setenv too) is gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = False
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                alive = True
                break
        if not alive:
            return
        time.sleep(0.01)
    raise AssertionError(f"process group {pgid} did not exit")


@pytest.mark.slow
def test_power_cut_at_random_instants_never_leaves_a_half_written_slot(tmp_path: Path) -> None:
    require_tool("fw_setenv")
    image = make_image(tmp_path / "rootfs.img", IMAGE_SIZE)
    rng = random.Random(20261125)

    def fresh_node(n: int) -> tuple[VirtualNode, Path]:
        node = VirtualNode.create(tmp_path / f"node{n}", slot_size=IMAGE_SIZE)
        config = node.root / "sub.toml"
        config.write_text(node.config_toml())
        return node, config

    # How long the transaction takes here, from its first log line to exit.
    node, config = fresh_node(-1)
    proc = start_install(config, image.path, image.sha256)
    wait_until_installing(proc)
    started = time.monotonic()
    assert proc.wait() == 0
    window = time.monotonic() - started

    outcomes: list[str] = []
    interrupted: list[bool] = []
    for n in range(CUTS):
        node, config = fresh_node(n)
        proc = start_install(config, image.path, image.sha256)
        wait_until_installing(proc)
        time.sleep(rng.uniform(0, window * 1.1))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        wait_for_group_exit(proc.pid)

        status = SlotManager(node.config).status()
        booted = node.reboot()
        if booted == "B":
            assert slot_sha256(node.config.B.device, image.size) == image.sha256
            assert status.state is NodeState.INSTALLED
        else:
            assert booted == "A"
            assert status.state is NodeState.IDLE
            assert status.primary == "A"
        outcomes.append(booted)
        interrupted.append(bool(status.last_error and "interrupted" in status.last_error))
    # The cuts spread over the whole transaction: both outcomes occur.
    assert set(outcomes) == {"A", "B"}, outcomes
    assert any(interrupted), "no cut landed while the slot was being written"
