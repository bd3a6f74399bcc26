"""redstone-sub works inside the capability set its units give it: root with none.

redstone-sub.service, redstone-health.service and redstone-sub-commit.service
run the Sub as root with an empty CapabilityBoundingSet= and NoNewPrivileges:
it writes the slot block devices and the bootloader env as their owner,
which needs no capability. setpriv reproduces that around the real command
(empty bounding and inheritable sets: after exec, root holds no capability)
for one A/B cycle on loop devices — slot B and the U-Boot env each a block
device, as on the board: install, the reboot (played by the test, as the
bootloader), status (the health unit's command), the commit unit's trial
condition and mark-good (its command). The daemon itself runs the same slot
code.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from redstone_agent.slots import SlotConfig
from redstone_agent.slots.virtual import UBOOT_ENV_SIZE, VirtualNode
from tests.integration.slots.conftest import make_image, slot_sha256
from tests.integration.systemd.image import unit
from tests.support import require_tool

pytestmark = pytest.mark.root

COMMIT = "redstone-sub-commit.service"
SUB_UNITS = ("redstone-sub.service", "redstone-health.service", COMMIT)
REDSTONE_SUB = str(Path(sys.executable).parent / "redstone-sub")


def setpriv_for(name: str) -> list[str]:
    """setpriv arguments for the capability set of unit ``name``."""
    service = unit(name)
    caps = service.values("Service", "CapabilityBoundingSet")
    keep = "".join(f",+{cap.lower().removeprefix('cap_')}" for cap in caps)
    argv = [require_tool("setpriv"), f"--bounding-set=-all{keep}", f"--inh-caps=-all{keep}"]
    if service.value("Service", "NoNewPrivileges") == "yes":
        argv.append("--no-new-privs")
    return argv


@pytest.fixture
def loop_devices(tmp_path: Path) -> Iterator[list[str]]:
    require_tool("losetup")
    attached: list[str] = []
    yield attached
    for device in attached:
        subprocess.run(["losetup", "-d", device], check=False)


def attach(attached: list[str], backing: Path) -> Path:
    result = subprocess.run(
        ["losetup", "-f", "--show", str(backing)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        pytest.skip(f"losetup unavailable here: {result.stderr.strip()}")
    attached.append(result.stdout.strip())
    return Path(attached[-1])


@pytest.fixture
def node(tmp_path: Path, loop_devices: list[str]) -> VirtualNode:
    """A virtual node whose slot B and U-Boot env are loop devices."""
    require_tool("fw_setenv")
    node = VirtualNode.create(tmp_path / "node")
    env = attach(loop_devices, node.root / "uboot.env")
    node.config.bootloader.uboot.fw_env_config.write_text(
        f"{env} 0x0 {UBOOT_ENV_SIZE:#x}\n{env} {UBOOT_ENV_SIZE:#x} {UBOOT_ENV_SIZE:#x}\n"
    )
    slot_b = attach(loop_devices, node.config.B.device)
    node.config = replace(node.config, B=SlotConfig(slot_b))
    return node


def sub_as(name: str, config: Path, *args: str) -> dict[str, object]:
    result = subprocess.run(
        [*setpriv_for(name), REDSTONE_SUB, "--config", str(config), *args, "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"{name}: redstone-sub {' '.join(args)}: {result.stderr}"
    status: dict[str, object] = json.loads(result.stdout)
    return status


def test_setpriv_leaves_no_capability() -> None:
    """The harness drops what the unit drops (else the test below proves nothing)."""
    for name in SUB_UNITS:
        assert unit(name).value("Service", "CapabilityBoundingSet") == "", name  # set, empty
    result = subprocess.run(
        [*setpriv_for("redstone-sub.service"), "cat", "/proc/self/status"],
        capture_output=True,
        text=True,
        check=True,
    )
    fields = dict(line.split(":\t") for line in result.stdout.splitlines() if ":\t" in line)
    assert fields["Uid"].split()[1] == "0"
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(fields[cap], 16) == 0, (cap, fields[cap])


def test_an_ab_cycle_on_block_devices_needs_no_capability(
    node: VirtualNode, tmp_path: Path
) -> None:
    config = tmp_path / "sub.toml"
    config.write_text(node.config_toml())
    image = make_image(tmp_path / "rootfs-2.img", 2 * 2**20 + 4321)

    status = sub_as(
        "redstone-sub.service", config, "install", str(image.path), "--sha256", image.sha256
    )
    assert status["state"] == "installed"
    assert slot_sha256(node.config.B.device, image.size) == image.sha256

    # The commit unit's command, as the unit runs it: installed, not yet booted —
    # nothing to commit, and the waiting update stays.
    assert sub_as(COMMIT, config, "mark-good", "--if-trying")["state"] == "installed"

    assert node.reboot() == "B"  # the bootloader spends a try on the new slot
    assert sub_as("redstone-health.service", config, "status")["state"] == "trying"
    assert sub_as(COMMIT, config, "mark-good", "--if-trying")["state"] == "idle"
    # Committed: the unit's command leaves the slot alone from now on.
    assert sub_as(COMMIT, config, "mark-good", "--if-trying")["state"] == "idle"

    boot = node.bootenv.load_state()
    assert boot.primary == "B" and boot.slots["B"].ok
    assert node.reboot() == "B"
