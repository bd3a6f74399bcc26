"""The harness's one-line errors."""

from __future__ import annotations

from redstone_agent.errors import RedstoneError


class HarnessError(RedstoneError):
    """Building or booting the QEMU test board failed; the message says which step."""
