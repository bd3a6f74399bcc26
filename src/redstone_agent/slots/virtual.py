"""A virtual A/B node on plain files: slots, a real bootloader env, a kernel cmdline.

The demo, the tests and integrators' benches use it to run the real install
transaction and the real env tools without hardware. :meth:`VirtualNode.reboot`
plays the bootloader: it applies the boot script's documented choice
(:meth:`BootState.choose`) to the env through the real tools and "boots" the
chosen slot by rewriting the cmdline file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from redstone_agent.slots.booted import CMDLINE_KEY
from redstone_agent.slots.bootloader import BootEnv, open_bootenv
from redstone_agent.slots.config import (
    BootloaderConfig,
    GrubConfig,
    SlotConfig,
    SlotsConfig,
    UBootConfig,
)
from redstone_agent.slots.scheme import BootState

UBOOT_ENV_SIZE = 0x4000
BOARD_DEFAULTS = "bootdelay=0\nbootcmd=run redstone_boot\n"


@dataclass
class VirtualNode:
    """Files under ``root`` that behave like an A/B domain controller's storage."""

    root: Path
    config: SlotsConfig

    @classmethod
    def create(
        cls,
        root: Path,
        *,
        backend: Literal["uboot", "grub"] = "uboot",
        slot_size: int = 8 << 20,
        booted: str = "A",
        tries: int = 3,
    ) -> VirtualNode:
        """Lay out two slot files and a blank env, then provision it like a factory would."""
        root.mkdir(parents=True, exist_ok=True)
        for slot in ("A", "B"):
            with (root / f"slot-{slot}.img").open("wb") as handle:
                handle.truncate(slot_size)
        (root / "cmdline").write_text(f"console=ttyS0 {CMDLINE_KEY}={booted}\n")
        # Redundant env (two copies, as docs/boot.md requires): a write torn by a
        # power cut leaves the previous copy valid.
        env_file = root / "uboot.env"
        env_file.write_bytes(b"\0" * (2 * UBOOT_ENV_SIZE))
        (root / "fw_env.config").write_text(
            f"{env_file} 0x0 {UBOOT_ENV_SIZE:#x}\n"
            f"{env_file} {UBOOT_ENV_SIZE:#x} {UBOOT_ENV_SIZE:#x}\n"
        )
        (root / "uboot-defaults.env").write_text(BOARD_DEFAULTS)
        config = SlotsConfig(
            A=SlotConfig(root / "slot-A.img", slot_size),
            B=SlotConfig(root / "slot-B.img", slot_size),
            bootloader=BootloaderConfig(
                backend=backend,
                uboot=UBootConfig(
                    fw_env_config=root / "fw_env.config", defaults=root / "uboot-defaults.env"
                ),
                grub=GrubConfig(envfile=root / "grubenv"),
            ),
            tries=tries,
            state_dir=root / "state",
            cmdline=root / "cmdline",
        )
        node = cls(root, config)
        node.bootenv.initialise(BootState.factory(booted).to_env())
        return node

    @property
    def bootenv(self) -> BootEnv:
        """The node's real bootloader env backend."""
        return open_bootenv(self.config.bootloader)

    def reboot(self) -> str:
        """Power-cycle: the bootloader picks a slot (saving its try counter); return it."""
        state = self.bootenv.load_state()
        slot, after = state.choose()
        if after != state:
            self.bootenv.save_state(after)
        self.config.cmdline.write_text(f"console=ttyS0 {CMDLINE_KEY}={slot}\n")
        return slot

    def config_toml(self) -> str:
        """The ``[slots]`` section of a sub.toml describing this node."""
        cfg = self.config
        boot = cfg.bootloader
        return (
            "[slots]\n"
            f"tries = {cfg.tries}\n"
            f'state-dir = "{cfg.state_dir}"\n'
            f'cmdline = "{cfg.cmdline}"\n'
            f"A = {_slot_toml(cfg.A)}\n"
            f"B = {_slot_toml(cfg.B)}\n"
            "[slots.bootloader]\n"
            f'backend = "{boot.backend}"\n'
            f'uboot = {{ fw-env-config = "{boot.uboot.fw_env_config}", '
            f'defaults = "{boot.uboot.defaults}" }}\n'
            f'grub = {{ envfile = "{boot.grub.envfile}" }}\n'
        )


def _slot_toml(slot: SlotConfig) -> str:
    size = "" if slot.size is None else f", size = {slot.size}"
    return f'{{ device = "{slot.device}"{size} }}'
