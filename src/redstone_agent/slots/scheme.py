"""The A/B variable scheme shared by every bootloader backend (see docs/boot.md).

Pure logic, no I/O: the bootloader environment is read into a :class:`BootState`,
changed by the operations below, and written back as variables. The boot
scripts in ``etc/`` implement :meth:`BootState.choose` in U-Boot and GRUB script;
the Python version here is the reference and drives the virtual bootloader.

Variables (values are ASCII):

- ``redstone_order``   slot names by priority, e.g. ``"B A"``; the first is primary
- ``redstone_<S>_ok``  ``1`` once slot S is committed (known good), else ``0``
- ``redstone_<S>_tries`` boot attempts left for an uncommitted slot, ``0`` to ``9``
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

SLOTS = ("A", "B")
MAX_TRIES = 9
ORDER_VAR = "redstone_order"


def ok_var(slot: str) -> str:
    """Name of the committed flag of ``slot``."""
    return f"redstone_{slot}_ok"


def tries_var(slot: str) -> str:
    """Name of the try counter of ``slot``."""
    return f"redstone_{slot}_tries"


class SchemeError(ValueError):
    """The environment holds values the scheme does not allow."""


@dataclass(frozen=True)
class SlotBoot:
    """What the bootloader knows of one slot."""

    ok: bool
    tries: int

    @property
    def bootable(self) -> bool:
        """Whether the boot script would still start this slot."""
        return self.ok or self.tries > 0


@dataclass(frozen=True)
class BootState:
    """The bootloader's view of both slots."""

    order: tuple[str, ...]
    slots: Mapping[str, SlotBoot]

    @property
    def primary(self) -> str:
        """The slot the bootloader tries first."""
        return self.order[0]

    @classmethod
    def factory(cls, booted: str) -> BootState:
        """A fresh environment: ``booted`` is committed and primary, the other slot is empty."""
        other = other_slot(booted)
        return cls(
            order=(booted, other),
            slots={booted: SlotBoot(ok=True, tries=0), other: SlotBoot(ok=False, tries=0)},
        )

    @classmethod
    def parse(cls, env: Mapping[str, str]) -> BootState:
        """Read the scheme's variables; raise :class:`SchemeError` when absent or invalid."""
        raw_order = env.get(ORDER_VAR)
        if raw_order is None:
            raise SchemeError(f"{ORDER_VAR} is not set")
        order = tuple(raw_order.split())
        if sorted(order) != sorted(SLOTS):
            raise SchemeError(f"{ORDER_VAR}={raw_order!r}: expected 'A B' or 'B A'")
        slots = {}
        for slot in SLOTS:
            ok = env.get(ok_var(slot), "0")
            tries = env.get(tries_var(slot), "0")
            if ok not in ("0", "1"):
                raise SchemeError(f"{ok_var(slot)}={ok!r}: expected 0 or 1")
            if not (tries.isdigit() and int(tries) <= MAX_TRIES):
                raise SchemeError(f"{tries_var(slot)}={tries!r}: expected 0 to {MAX_TRIES}")
            slots[slot] = SlotBoot(ok=ok == "1", tries=int(tries))
        return cls(order=order, slots=slots)

    def to_env(self) -> dict[str, str]:
        """All variables of the scheme, ready to write in one batch."""
        env = {ORDER_VAR: " ".join(self.order)}
        for slot in SLOTS:
            env[ok_var(slot)] = "1" if self.slots[slot].ok else "0"
            env[tries_var(slot)] = str(self.slots[slot].tries)
        return env

    def _with(self, slot: str, boot: SlotBoot, *, primary: str | None = None) -> BootState:
        slots = dict(self.slots)
        slots[slot] = boot
        order = self.order
        if primary is not None:
            order = (primary, other_slot(primary))
        return replace(self, order=order, slots=slots)

    def mark_bad(self, slot: str) -> BootState:
        """Make ``slot`` unbootable and the other slot primary."""
        return self._with(slot, SlotBoot(ok=False, tries=0), primary=other_slot(slot))

    def try_slot(self, slot: str, tries: int) -> BootState:
        """Make uncommitted ``slot`` primary with ``tries`` attempts before fallback."""
        if not 1 <= tries <= MAX_TRIES:
            raise SchemeError(f"tries must be 1 to {MAX_TRIES}, got {tries}")
        return self._with(slot, SlotBoot(ok=False, tries=tries), primary=slot)

    def commit(self, slot: str) -> BootState:
        """Mark ``slot`` known good and primary."""
        return self._with(slot, SlotBoot(ok=True, tries=0), primary=slot)

    def choose(self) -> tuple[str, BootState]:
        """What the boot script does at power-on: the slot to boot and the env it saves.

        The first slot in order that is committed boots as is; an uncommitted one
        with tries left boots after its counter is decremented (and saved, so a
        crash counts); spent slots are skipped. If nothing is bootable the
        primary is started anyway: an attempt beats a dead ECU.
        """
        for slot in self.order:
            boot = self.slots[slot]
            if boot.ok:
                return slot, self
            if boot.tries > 0:
                return slot, self._with(slot, SlotBoot(ok=False, tries=boot.tries - 1))
        return self.primary, self


def other_slot(slot: str) -> str:
    """The A/B partner of ``slot``."""
    if slot not in SLOTS:
        raise SchemeError(f"unknown slot {slot!r}: expected A or B")
    return "B" if slot == "A" else "A"
