"""The ``[slots]`` section of a node's config file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from redstone_agent.slots.scheme import MAX_TRIES


@dataclass(frozen=True)
class SlotConfig:
    """One rootfs slot: a block device or, on test benches, a regular file."""

    device: Path
    size: int | None = None
    """Bytes the slot may hold. Default: a block device's size, a regular file's
    current length (a file slot is preallocated and never grows past it)."""

    def __post_init__(self) -> None:
        if self.size is not None and self.size <= 0:
            raise ValueError(f"size: must be a positive number of bytes, got {self.size}")


@dataclass(frozen=True)
class UBootConfig:
    """U-Boot environment access through libubootenv's tools."""

    fw_env_config: Path = Path("/etc/fw_env.config")
    defaults: Path | None = None
    """Default environment (``key=value`` lines) used to initialise a blank env."""
    fw_printenv: str = "fw_printenv"
    fw_setenv: str = "fw_setenv"


@dataclass(frozen=True)
class GrubConfig:
    """GRUB environment block access through ``grub-editenv``."""

    envfile: Path = Path("/boot/grub/grubenv")
    grub_editenv: str = "grub-editenv"


@dataclass(frozen=True)
class BootloaderConfig:
    """Which bootloader switches slots, and how its environment is reached."""

    backend: Literal["uboot", "grub"] = "uboot"
    uboot: UBootConfig = field(default_factory=UBootConfig)
    grub: GrubConfig = field(default_factory=GrubConfig)


@dataclass(frozen=True)
class SlotsConfig:
    """An A/B node: two slots, a bootloader, and where the node keeps its state."""

    A: SlotConfig
    B: SlotConfig
    bootloader: BootloaderConfig = field(default_factory=BootloaderConfig)
    tries: int = 3
    """Boot attempts a freshly installed slot gets before the bootloader falls back."""
    state_dir: Path = Path("/var/lib/redstone")
    cmdline: Path = Path("/proc/cmdline")
    """Where the booted slot is read (``redstone.slot=A|B``); a file in tests."""
    mountinfo: Path = Path("/proc/self/mountinfo")
    verify_readback: bool = False
    """Read the written slot back and hash it again before switching (slower, safer)."""

    def __post_init__(self) -> None:
        if not 1 <= self.tries <= MAX_TRIES:
            raise ValueError(f"tries: must be between 1 and {MAX_TRIES}, got {self.tries}")

    def device(self, slot: str) -> Path:
        """The device of slot ``A`` or ``B``."""
        config: SlotConfig = getattr(self, slot)
        return config.device
