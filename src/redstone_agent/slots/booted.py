"""Which slot is running: the bootloader says so on the kernel command line."""

from __future__ import annotations

from pathlib import Path

from redstone_agent.slots.errors import BootedSlotUnknown
from redstone_agent.slots.scheme import SLOTS

CMDLINE_KEY = "redstone.slot"


def booted_slot(cmdline: Path) -> str:
    """Return ``A`` or ``B`` from ``redstone.slot=`` in ``cmdline``.

    The boot script appends it; without it the agent cannot know which slot is
    safe to overwrite, so nothing may be installed.
    """
    try:
        words = cmdline.read_text().split()
    except OSError as exc:
        raise BootedSlotUnknown(f"{cmdline}: cannot read kernel command line ({exc})") from None
    values = [w.partition("=")[2] for w in words if w.startswith(f"{CMDLINE_KEY}=")]
    if not values:
        raise BootedSlotUnknown(
            f"{cmdline}: no {CMDLINE_KEY}= on the kernel command line; "
            "is the Redstone boot script installed?"
        )
    slot = values[-1]  # the kernel, too, lets the last occurrence win
    if slot not in SLOTS:
        raise BootedSlotUnknown(f"{cmdline}: {CMDLINE_KEY}={slot!r}, expected A or B")
    return slot
