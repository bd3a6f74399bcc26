"""A/B rootfs slots: which slot runs, writing the other one safely, switching the bootloader.

The install transaction lives in :class:`SlotManager`; the bootloader backends
in :mod:`redstone_agent.slots.bootloader`; the variable scheme they share in
:mod:`redstone_agent.slots.scheme` (docs/boot.md).
"""

from redstone_agent.slots.booted import booted_slot
from redstone_agent.slots.config import (
    BootloaderConfig,
    GrubConfig,
    SlotConfig,
    SlotsConfig,
    UBootConfig,
)
from redstone_agent.slots.errors import (
    BootedSlotUnknown,
    BootEnvCorrupt,
    BootloaderError,
    InstallFailed,
    InstallRefused,
    SlotError,
    SourceMismatch,
    UnsafeTarget,
)
from redstone_agent.slots.imaging import SourceDigest
from redstone_agent.slots.manager import SlotManager
from redstone_agent.slots.status import NodeState, NodeStatus, SlotView

__all__ = [
    "BootEnvCorrupt",
    "BootedSlotUnknown",
    "BootloaderConfig",
    "BootloaderError",
    "GrubConfig",
    "InstallFailed",
    "InstallRefused",
    "NodeState",
    "NodeStatus",
    "SlotConfig",
    "SlotError",
    "SlotManager",
    "SlotView",
    "SlotsConfig",
    "SourceDigest",
    "SourceMismatch",
    "UBootConfig",
    "UnsafeTarget",
    "booted_slot",
]
