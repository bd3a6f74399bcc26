"""What a node reports about its slots: one value object, printable and JSON-able."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any


class NodeState(enum.StrEnum):
    """Where the node stands in the A/B cycle (see docs/boot.md)."""

    IDLE = "idle"
    """The running slot is committed; nothing is pending."""
    INSTALLING = "installing"
    """A process is writing the inactive slot right now."""
    INSTALLED = "installed"
    """The inactive slot holds a verified image and is primary: reboot to try it."""
    TRYING = "trying"
    """Running an uncommitted slot: run the health check, then mark-good or mark-bad."""
    REVERTING = "reverting"
    """The trial was marked bad: the next reboot returns to the committed slot."""
    ROLLED_BACK = "rolled-back"
    """The bootloader fell back from a trial slot; stays until acknowledged."""


@dataclass(frozen=True)
class SlotView:
    """One slot as the operator sees it."""

    name: str
    device: str
    booted: bool
    primary: bool
    committed: bool
    tries: int


@dataclass(frozen=True)
class NodeStatus:
    """The whole answer to ``redstone-sub status``."""

    state: NodeState
    booted: str
    primary: str
    slots: list[SlotView]
    install: dict[str, Any] | None = None
    """The pending or running install: slot, sha256, size, source, timestamps."""
    rollback: dict[str, Any] | None = None
    """Set in ROLLED_BACK: which slot failed, why, when."""
    last_error: str | None = None
    """Why the last install did not complete, until the next install."""
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Plain data for ``--json`` and the D-Bus/SOME/IP layers."""
        data = asdict(self)
        data["state"] = self.state.value
        return data

    def describe(self) -> str:
        """A few lines for a person at a terminal."""
        lines = [f"state:   {self.state.value}", f"booted:  {self.booted}"]
        lines.append(f"primary: {self.primary}")
        for slot in self.slots:
            flags = []
            if slot.booted:
                flags.append("booted")
            if slot.primary:
                flags.append("primary")
            flags.append("committed" if slot.committed else f"uncommitted, {slot.tries} tries left")
            lines.append(f"slot {slot.name}: {slot.device} ({', '.join(flags)})")
        if self.install:
            lines.append(
                f"install: slot {self.install['slot']} sha256 {self.install['sha256'][:16]}… "
                f"from {self.install['source']}"
            )
        if self.rollback:
            lines.append(f"rollback: {self.rollback['reason']}")
        if self.last_error:
            lines.append(f"last error: {self.last_error}")
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines)
