"""File-backed boot-script copies, a real U-Boot env (fw_setenv) and real mkimage scripts."""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

from redstone_agent.slots.bootloader import UBootEnv
from redstone_agent.slots.bootscript import BootScriptStore
from redstone_agent.slots.bootscript_config import BootScriptConfig, CopyConfig
from redstone_agent.slots.config import UBootConfig
from tests.support import require_tool

COPY_SIZE = 64 * 1024
ENV_SIZE = 0x4000


@dataclass(frozen=True)
class Script:
    path: Path
    data: bytes
    sha256: str

    @property
    def length(self) -> int:
        return len(self.data)


def mkimage(tmp: Path, name: str, text: str) -> Script:
    require_tool("mkimage")
    source = tmp / f"{name}.cmd"
    source.write_text(text)
    out = tmp / f"{name}.scr"
    subprocess.run(
        ["mkimage", "-A", "arm", "-T", "script", "-C", "none", "-n", name, "-d", source, out],
        check=True,
        capture_output=True,
    )
    data = out.read_bytes()
    return Script(out, data, hashlib.sha256(data).hexdigest())


@dataclass
class Bench:
    tmp: Path
    config: BootScriptConfig
    old: Script
    new: Script

    def store(self) -> BootScriptStore:
        return BootScriptStore(self.config, UBootEnv(self.config.uboot))

    def copy(self, name: str) -> Path:
        return self.config.copies[name].device

    def boots(self) -> str:
        return self.store().status().booting

    def selector(self) -> str:
        return self.store().bootenv.read().get("redstone_script", "")


def make_bench(tmp: Path, *, redundant_env: bool = True, require: bool = True) -> Bench:
    """Both copies hold the factory script (as the disk template does); the env is provisioned."""
    require_tool("fw_setenv")
    old = mkimage(tmp, "old", "echo old\n" * 20)
    new = mkimage(tmp, "new", "echo new\n" * 40)
    for name in "AB":
        copy = tmp / f"script{name}.bin"
        copy.write_bytes(old.data + b"\xff" * (COPY_SIZE - old.length))
    envs = [tmp / "env1.bin", tmp / "env2.bin"][: 2 if redundant_env else 1]
    for env in envs:
        env.write_bytes(b"\0" * ENV_SIZE)
    fw_env = tmp / "fw_env.config"
    fw_env.write_text("".join(f"{env} 0x0 {ENV_SIZE:#x}\n" for env in envs))
    defaults = tmp / "board.env"
    defaults.write_text("bootcmd=run redstone_boot\n")
    config = BootScriptConfig(
        copies={name: CopyConfig(tmp / f"script{name}.bin") for name in "AB"},
        uboot=UBootConfig(fw_env_config=fw_env, defaults=defaults),
        state_dir=tmp / "state",
        require_redundant_env=require,
    )
    UBootEnv(config.uboot).initialise({"redstone_order": "A B"})
    return Bench(tmp, config, old, new)
