"""A full flash between two processes in two network namespaces over udp_multicast CAN.

The simulator runs as the installed ``redstone-ecusim`` command in one
namespace, the flasher in another; the shared netns harness joins them on a
private bridge with a multicast route. python-can's udp_multicast drops frames
when unpaced, so both ISO-TP ends use block size 8 (PLATFORM.md).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.integration.netns import SomeIpLab, stop_process
from tests.support import require_tool

pytestmark = pytest.mark.root

LINK = """\
[docan]
interface = "udp_multicast"
channel = "239.74.163.2"
tx_id = 0x7E0
rx_id = 0x7E8
block_size = 8
[security]
params = { mask = "5a3c9ee1" }"""
"""The bus and SecurityAccess both ends must agree on."""

SIM_TOML = f"""\
name = "bcm"
erase_time = 0.05
{LINK}
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

ECU_TOML = f"""\
name = "bcm"
transport = "docan"
{LINK}
[timing]
p2 = 2.0
[programming]
reset_settle = 0.3
[[regions]]
name = "app"
address = 0x10000
size = 0x20000
"""


def test_flash_across_namespaces(tmp_path: Path) -> None:
    require_tool("ip")
    ecusim = shutil.which("redstone-ecusim", path=str(Path(sys.executable).parent))
    assert ecusim, "redstone-ecusim is not installed in this environment"
    (tmp_path / "sim.toml").write_text(SIM_TOML)
    (tmp_path / "ecu.toml").write_text(ECU_TOML)
    (tmp_path / "flash.py").write_text(textwrap.dedent(FLASH))
    with SomeIpLab(tmp_path / "lab", ["ecu", "tester"]) as lab:
        sim = subprocess.Popen(
            lab.nodes["ecu"].command([ecusim, str(tmp_path / "sim.toml"), "--json"]),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            assert sim.stdout is not None
            ready = json.loads(sim.stdout.readline())
            assert ready["name"] == "bcm" and ready["mode"] == "application"
            flash = subprocess.run(
                lab.nodes["tester"].command(
                    [sys.executable, str(tmp_path / "flash.py"), str(tmp_path / "ecu.toml")]
                ),
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
            stop_process(sim, grace=10.0)
    assert sim.returncode == 0, sim.stderr.read().decode() if sim.stderr else ""
