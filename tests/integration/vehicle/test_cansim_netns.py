"""``redstone-cansim`` in one network namespace, CanPreconditions in another.

The two processes share a python-can ``udp_multicast`` bus on the lab's private
bridge (tests/integration/netns.py: one namespace per node, a multicast route
on each). In the default namespace that traffic would leave the host on eth0,
so this test needs root and is skipped without it; the same-process
``virtual`` test in this directory always runs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.integration.netns import SomeIpLab, stop_process
from tests.integration.vehicle.support import DBC, park_drive_park
from tests.support import require_tool

pytestmark = pytest.mark.root

GROUP = "239.74.163.9"
"""The udp_multicast group of this lab's CAN bus (inside the lab only)."""
DEADLINE_S = 90.0

SCENARIO = """\
name = "lab-park-drive-park"
[[step]]
duration-s = 2.0
signals = { ignition = "ON", gear = "P", speed_kph = 0, battery_v = 12.6, soc_pct = 80 }
[[step]]
duration-s = 2.0
signals = { gear = "D", speed_kph = 42.5 }
malformed = ["soc_pct"]
[[step]]
duration-s = 2.0
signals = { gear = "P", speed_kph = 0 }
"""

OBSERVER = """\
import asyncio, json, sys
from pathlib import Path
from redstone_agent.vehicle.config import VehicleSettings
from redstone_agent.vehicle.provider import CanPreconditions

async def main():
    settings = VehicleSettings(
        dbc=Path(sys.argv[1]), interface="udp_multicast", channel=sys.argv[2],
        rules=["speed_kph <= 0", 'gear in ["P"]'], download_rules=["soc_pct >= 30"],
        freshness_ms=500,
    )
    async with CanPreconditions(settings) as provider:
        print(json.dumps({"ready": True}), flush=True)
        phases = 0
        last = None
        # Every wake, until: blocked (unknown), clear, blocked (driving), clear, blocked (stale).
        while phases < 5:
            reasons = [b.reason for b in provider.blockers("flash")]
            if last is None or last != bool(reasons):
                phases += 1
                last = bool(reasons)
            print(json.dumps({"flash": reasons,
                              "malformed": sum(provider.store.malformed.values())}),
                  flush=True)
            await provider.wait_change(10.0)

asyncio.run(main())
"""


def test_simulator_and_preconditions_across_namespaces(tmp_path: Path) -> None:
    require_tool("ip")
    cansim = shutil.which("redstone-cansim", path=str(Path(sys.executable).parent))
    assert cansim, "redstone-cansim is not installed in this environment (pip install -e .)"
    (tmp_path / "scenario.toml").write_text(SCENARIO)
    (tmp_path / "observer.py").write_text(textwrap.dedent(OBSERVER))
    with SomeIpLab(tmp_path / "lab", ["car", "tbox"]) as lab:
        observer = subprocess.Popen(
            lab.nodes["tbox"].command(
                [sys.executable, str(tmp_path / "observer.py"), str(DBC), GROUP]
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        simulator: subprocess.Popen[str] | None = None
        try:
            assert observer.stdout is not None
            assert json.loads(observer.stdout.readline()) == {"ready": True}
            simulator = subprocess.Popen(
                lab.nodes["car"].command(
                    [
                        cansim,
                        "--dbc",
                        str(DBC),
                        "--interface",
                        "udp_multicast",
                        "--channel",
                        GROUP,
                        "--scenario",
                        str(tmp_path / "scenario.toml"),
                        "--json",
                    ]
                ),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            sim_out, sim_err = simulator.communicate(timeout=DEADLINE_S)
            assert simulator.returncode == 0, sim_err
            steps = [json.loads(line) for line in sim_out.splitlines()]
            assert [s["step"] for s in steps] == [1, 2, 3]
            assert steps[1]["signals"]["gear"] == "D"
            deadline = time.monotonic() + DEADLINE_S
            while observer.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            observed = [json.loads(line) for line in observer.stdout.read().splitlines()]
        finally:
            if simulator is not None:
                stop_process(simulator)  # type: ignore[arg-type]
            stop_process(observer)  # type: ignore[arg-type]
    assert observer.returncode == 0, observer.stderr.read() if observer.stderr else ""
    reports: list[list[str]] = [o["flash"] for o in observed]
    unknown, driving, silent = park_drive_park(reports)
    assert all("unknown (never received)" in r for r in unknown[0])
    assert any('gear in ["P"] fails: gear = D' in reasons for reasons in driving), driving
    assert any("speed_kph <= 0 fails: speed_kph = 42.5" in reasons for reasons in driving)
    assert any(" is stale (last seen " in r for r in silent[0])
    # The simulator's short SoC frames while driving were counted, not fatal.
    assert observed[-1]["malformed"] > 0
