"""The files we ship for integrators are valid: config examples load, boot scripts parse."""

from __future__ import annotations

import subprocess
from pathlib import Path

from redstone_agent.config import load
from redstone_agent.slots import SlotsConfig
from tests.support import require_tool

ROOT = Path(__file__).resolve().parents[3]


def test_example_sub_toml_loads() -> None:
    config = load(ROOT / "etc/redstone/sub.toml", SlotsConfig, section="slots")
    assert config.A.device == Path("/dev/mmcblk0p2")
    assert config.bootloader.backend == "uboot"
    assert config.tries == 3


def test_example_sub_toml_configures_the_daemon() -> None:
    from redstone_agent.sub.config import SubConfig

    config = load(ROOT / "etc/redstone/sub.toml", SubConfig, section="sub")
    assert config.someip.instance_id == 1


def test_uboot_script_compiles(tmp_path: Path) -> None:
    mkimage = require_tool("mkimage")
    out = tmp_path / "boot.scr"
    subprocess.run(
        [mkimage, "-A", "arm", "-T", "script", "-C", "none", "-n", "Redstone A/B"]
        + ["-d", str(ROOT / "etc/u-boot/boot.cmd"), str(out)],
        check=True,
        capture_output=True,
    )
    assert out.stat().st_size > 64


def test_grub_script_parses() -> None:
    check = require_tool("grub-script-check")
    subprocess.run([check, str(ROOT / "etc/grub/grub.cfg")], check=True)


def test_scripts_use_the_scheme_variables() -> None:
    for script in ("etc/u-boot/boot.cmd", "etc/grub/grub.cfg"):
        text = (ROOT / script).read_text()
        for var in ("redstone_order", "redstone_A_ok", "redstone_B_tries", "redstone.slot="):
            assert var in text, (script, var)
