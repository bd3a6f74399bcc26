"""A/B rootfs slots: which slot runs, writing the other one safely, switching the bootloader.

The install transaction lives in :class:`SlotManager`; the bootloader backends
in :mod:`redstone_agent.slots.bootloader`; the variable scheme they share in
:mod:`redstone_agent.slots.scheme` (docs/boot.md).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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
from redstone_agent.slots.status import NodeState, NodeStatus, SlotView

if TYPE_CHECKING:
    from redstone_agent.slots.booted import booted_slot
    from redstone_agent.slots.imaging import SourceDigest
    from redstone_agent.slots.manager import SlotManager

_LAZY = {
    "SlotManager": "redstone_agent.slots.manager",
    "SourceDigest": "redstone_agent.slots.imaging",
    "booted_slot": "redstone_agent.slots.booted",
}
"""Imported on first use: the writer and imaging stack (requests, ~0.3 s) is not
needed by those that only read a config (``redstone-master status``, ``check-now``)."""


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


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
