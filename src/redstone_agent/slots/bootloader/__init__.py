"""Bootloader environment backends behind one interface.

Both backends store the same variable scheme (:mod:`redstone_agent.slots.scheme`,
docs/boot.md) and call the real tools — ``fw_printenv``/``fw_setenv`` from
libubootenv, ``grub-editenv`` from GRUB — so what the tests exercise is what the
vehicle runs.
"""

from redstone_agent.slots.bootloader.base import BootEnv
from redstone_agent.slots.bootloader.grub import GrubEnv
from redstone_agent.slots.bootloader.uboot import UBootEnv
from redstone_agent.slots.config import BootloaderConfig

__all__ = ["BootEnv", "GrubEnv", "UBootEnv", "open_bootenv"]


def open_bootenv(config: BootloaderConfig) -> BootEnv:
    """The backend the config names."""
    if config.backend == "grub":
        return GrubEnv(config.grub)
    return UBootEnv(config.uboot)
