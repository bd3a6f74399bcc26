"""A real ``redstone-sub install`` SIGKILLed mid-download resumes from its journaled offset.

The image comes from a loopback HTTP server that sends the first request at
~1 MiB/s, so the install is still downloading when the test sees the slot
journal name a durable offset and cuts the power (SIGKILL of the process
group). The next ``install`` of the same image must ask the server for
``Range: bytes=<that offset>-`` guarded by the ETag it journaled, finish
with the verified image in the slot, and the virtual bootloader must boot it.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from redstone_agent.slots import NodeState, SlotManager
from redstone_agent.slots.virtual import VirtualNode
from tests.integration.slots.conftest import make_image, slot_sha256
from tests.integration.slots.test_power_cut import wait_for_group_exit
from tests.integration.transfer.server import Act, Blob, Drip, serving
from tests.support import require_tool

pytestmark = pytest.mark.slow

IMAGE_SIZE = 10 * (1 << 20) + 3 * 4096 + 123
SLOW = Drip(size=64 << 10, pause=1 / 16)
"""About 1 MiB/s: the first 4 MiB checkpoint comes after a few seconds, the end much later."""


def install(config: Path, url: str, sha256: str, size: int) -> list[str]:
    return [
        sys.executable, "-m", "redstone_agent.cli.sub", "-c", str(config),
        "install", url, "--sha256", sha256, "--size", str(size),
    ]  # fmt: skip


def journal(node: VirtualNode) -> dict[str, Any]:
    """The slot layer's record on disk now, read without touching the journal's files.

    (``Journal.load`` removes temporaries it takes for torn: not while a writer runs.)
    """
    try:
        record = json.loads((node.config.state_dir / "slots.json").read_bytes())
    except (OSError, ValueError):  # not written yet, or replaced while we read
        return {}
    state: dict[str, Any] = record["state"]
    return state


def wait_for_resume_point(node: VirtualNode, proc: subprocess.Popen[bytes]) -> int:
    """Block until the slot journal names a durable offset (the install has not ended)."""
    while True:
        offset = (journal(node).get("resume") or {}).get("offset", 0)
        if offset > 0:
            return int(offset)
        assert proc.poll() is None, "the install ended before any checkpoint"
        time.sleep(0.05)


def test_sigkilled_install_resumes_by_range_from_its_journaled_offset(tmp_path: Path) -> None:
    require_tool("fw_setenv")
    node = VirtualNode.create(tmp_path / "node", slot_size=16 << 20)
    config = node.root / "sub.toml"
    config.write_text(node.config_toml())
    image = make_image(tmp_path / "rootfs.img", IMAGE_SIZE)
    content = image.path.read_bytes()

    with serving(Blob(content, etag='"rootfs-v2"')) as (url, plan):
        plan.script = [Act(drip=SLOW)]  # the first request trickles; a resume is served at once
        proc = subprocess.Popen(
            install(config, url, image.sha256, image.size),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for_resume_point(node, proc)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        wait_for_group_exit(proc.pid)
        offset = journal(node)["resume"]["offset"]  # a later checkpoint may have landed
        assert 0 < offset < image.size
        with node.config.B.device.open("rb") as slot:
            prefix = slot.read(offset)
        assert prefix == content[:offset], "the journaled prefix is not durable in the slot"

        argv = install(config, url, image.sha256, image.size)
        done = subprocess.run(argv, check=False, capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr.decode()

    assert len(plan.seen) == 2, plan.seen
    assert plan.seen[0].range is None
    assert plan.seen[1].range == f"bytes={offset}-"
    assert plan.seen[1].if_range == '"rootfs-v2"'
    assert slot_sha256(node.config.B.device, image.size) == image.sha256
    status = SlotManager(node.config).status()
    assert status.state is NodeState.INSTALLED
    assert node.reboot() == "B"
    assert SlotManager(node.config).mark_good().state is NodeState.IDLE
    assert node.reboot() == "B"
    assert hashlib.sha256(node.config.B.device.read_bytes()[: image.size]).hexdigest() == (
        image.sha256
    )
