"""What one boot printed on the serial console, as facts a test can assert on.

Three speakers: U-Boot running etc/u-boot/boot.cmd (lines ``redstone: ...``)
and the board script (``board: ...``), the kernel (panics), and the guest's
init (``REDSTONE: ...``, tools/qemu/guest-init.sh).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

GUEST = "REDSTONE: "
SCRIPT = ("redstone: ", "board: ")


@dataclass(frozen=True)
class BootRecord:
    """One boot's console output, parsed."""

    text: str
    timed_out: bool = False

    @property
    def lines(self) -> list[str]:
        """Console lines without carriage returns."""
        return [line.rstrip("\r") for line in self.text.split("\n")]

    @property
    def script_lines(self) -> list[str]:
        """What the U-Boot scripts said."""
        return [line for line in self.lines if line.startswith(SCRIPT)]

    @property
    def guest_lines(self) -> list[str]:
        """What the guest's init said, without the prefix."""
        return [line[len(GUEST) :] for line in self.lines if line.startswith(GUEST)]

    def _guest_value(self, pattern: str) -> str | None:
        return _first_match(self.guest_lines, pattern)

    @property
    def uboot_slot(self) -> str | None:
        """The slot boot.cmd chose (``redstone: booting slot X``)."""
        return _first_match(self.script_lines, r"redstone: booting slot (\S+)")

    @property
    def cmdline(self) -> str | None:
        """The guest's whole /proc/cmdline."""
        return self._guest_value(r"cmdline (.*)")

    @property
    def slot(self) -> str | None:
        """The slot the running Linux found on /proc/cmdline."""
        return self._guest_value(r"booted slot=(\S*) root=\S*")

    @property
    def release(self) -> str | None:
        """``version=N`` read from the booted rootfs."""
        return self._guest_value(r"rootfs (version=\S+)")

    @property
    def health(self) -> str | None:
        """``ok`` or ``fail`` as the guest's health check reported."""
        return self._guest_value(r"health=(\S+)")

    @property
    def committed(self) -> str | None:
        """The slot the guest committed with fw_setenv during this boot."""
        return self._guest_value(r"committed (\S+)")

    def env(self, when: str) -> dict[str, str]:
        """The ``redstone_*`` variables the guest read ``before`` or ``after`` its decision."""
        prefix = f"env-{when} "
        pairs = [line[len(prefix) :] for line in self.guest_lines if line.startswith(prefix)]
        return dict(pair.split("=", 1) for pair in pairs)

    @property
    def panicked(self) -> bool:
        """The kernel panicked during this boot."""
        return any("Kernel panic - not syncing" in line for line in self.lines)

    @property
    def ending(self) -> str:
        """How the boot ended: power-off, reboot, panic, timeout or unknown."""
        if self.timed_out:
            return "timeout"
        if self.panicked:
            return "panic"
        guest = self.guest_lines
        if guest and guest[-1] == "power-off":
            return "power-off"
        if any(line.startswith("reboot") for line in guest):
            return "reboot"
        return "unknown"


def _first_match(lines: list[str], pattern: str) -> str | None:
    """Group 1 of the first line that ``pattern`` matches entirely."""
    for line in lines:
        match = re.fullmatch(pattern, line)
        if match:
            return match.group(1)
    return None
