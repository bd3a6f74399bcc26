"""A full flash between two processes in two network namespaces over udp_multicast CAN.

The simulator runs as the installed ``redstone-ecusim`` command in one
namespace, the flasher in another; a veth pair with a multicast route joins
them. python-can's udp_multicast drops frames when unpaced, so both ISO-TP
ends use block size 8 (PLATFORM.md).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import require_tool

pytestmark = pytest.mark.root

SIM_TOML = """\
name = "bcm"
erase_time = 0.05
[docan]
interface = "udp_multicast"
channel = "239.74.163.2"
tx_id = 0x7E0
rx_id = 0x7E8
block_size = 8
[security]
params = { mask = "5a3c9ee1" }
[[memory.regions]]
name = "app"
address = 0x10000
size = 0x20000
"""

FLASH = """\
import json, sys
from redstone_agent.uds.config import load_ecu
from redstone_agent.uds.flasher import Flasher, FlashImage
ecu = load_ecu(sys.argv[1])
data = b"2.0.0".ljust(16, b"\\0") + bytes(range(256)) * 96
report = Flasher(ecu).install(FlashImage(data, "2.0.0"))
print(json.dumps({"outcome": str(report.outcome), "error": report.error,
                  "before": report.version_before, "after": report.version_after}))
"""

ECU_TOML = """\
name = "bcm"
transport = "docan"
[docan]
interface = "udp_multicast"
channel = "239.74.163.2"
tx_id = 0x7E0
rx_id = 0x7E8
block_size = 8
[security]
params = { mask = "5a3c9ee1" }
[timing]
p2 = 2.0
[programming]
reset_settle = 0.3
[[regions]]
name = "app"
address = 0x10000
size = 0x20000
"""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str]]:
    require_tool("ip")
    tag = f"{os.getpid() % 100000}"
    ecu_ns, tester_ns = f"rsuds-e{tag}", f"rsuds-t{tag}"
    veth_e, veth_t = f"rsue{tag}", f"rsut{tag}"
    try:
        ip("netns", "add", ecu_ns)
        ip("netns", "add", tester_ns)
        ip("link", "add", veth_e, "type", "veth", "peer", "name", veth_t)
        ip("link", "set", veth_e, "netns", ecu_ns)
        ip("link", "set", veth_t, "netns", tester_ns)
        for ns, dev, addr in (
            (ecu_ns, veth_e, "10.77.0.1/24"),
            (tester_ns, veth_t, "10.77.0.2/24"),
        ):
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "addr", "add", addr, "dev", dev)
            ip("-n", ns, "link", "set", dev, "up")
            ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", dev)
        yield ecu_ns, tester_ns
    finally:
        for ns in (ecu_ns, tester_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def test_flash_across_namespaces(namespaces: tuple[str, str], tmp_path: Path) -> None:
    ecu_ns, tester_ns = namespaces
    ecusim = shutil.which("redstone-ecusim", path=str(Path(sys.executable).parent))
    assert ecusim, "redstone-ecusim is not installed in this environment"
    (tmp_path / "sim.toml").write_text(SIM_TOML)
    (tmp_path / "ecu.toml").write_text(ECU_TOML)
    (tmp_path / "flash.py").write_text(textwrap.dedent(FLASH))
    sim = subprocess.Popen(
        ["ip", "netns", "exec", ecu_ns, ecusim, str(tmp_path / "sim.toml"), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert sim.stdout is not None
        ready = json.loads(sim.stdout.readline())
        assert ready["name"] == "bcm" and ready["mode"] == "application"
        flash = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                tester_ns,
                sys.executable,
                str(tmp_path / "flash.py"),
                str(tmp_path / "ecu.toml"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert flash.returncode == 0, flash.stderr
        result = json.loads(flash.stdout.strip().splitlines()[-1])
        assert result == {
            "outcome": "installed",
            "error": None,
            "before": "1.0.0",
            "after": "2.0.0",
        }
    finally:
        sim.terminate()
        try:
            sim.wait(10)
        except subprocess.TimeoutExpired:
            sim.kill()
            sim.wait()
    assert sim.returncode == 0, sim.stderr.read() if sim.stderr else ""
