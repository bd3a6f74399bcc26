"""The backend interface and the subprocess plumbing both backends share."""

from __future__ import annotations

import os
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

from redstone_agent.slots.errors import BootEnvCorrupt, BootloaderError
from redstone_agent.slots.scheme import BootState, SchemeError

TOOL_TIMEOUT_S = 30.0


class BootEnv(ABC):
    """Read and write bootloader environment variables.

    ``write`` applies a batch of assignments with a single tool call (one
    write of the environment block) and reads them back, so a switch is either
    fully in the environment or reported as failed.
    """

    description: str
    """Human-readable location, e.g. ``U-Boot env (/etc/fw_env.config)``."""

    @abstractmethod
    def read(self) -> dict[str, str]:
        """All variables; :class:`BootEnvCorrupt` when the block cannot be read."""

    @abstractmethod
    def _write(self, values: Mapping[str, str]) -> None:
        """Set ``values`` in one tool call."""

    @abstractmethod
    def _initialise(self, values: Mapping[str, str]) -> None:
        """Create a valid environment holding ``values`` (also over a corrupt one)."""

    def initialise(self, values: Mapping[str, str]) -> None:
        """Create a valid environment holding ``values`` (also over a corrupt one)."""
        self._check(values)
        self._initialise(values)

    def write(self, values: Mapping[str, str]) -> None:
        """Set ``values`` and verify that the environment now holds them."""
        self._check(values)
        self._write(values)
        stored = self.read()
        wrong = [k for k, v in values.items() if stored.get(k) != v]
        if wrong:
            raise BootloaderError(f"{self.description}: {wrong[0]} did not persist")

    def _check(self, values: Mapping[str, str]) -> None:
        """Both tools take ``key=value`` lines: a newline or '=' would smuggle in another."""
        for key, value in values.items():
            if "\n" in value or "=" in key or "\n" in key:
                raise BootloaderError(f"{self.description}: invalid assignment {key!r}")

    def load_state(self) -> BootState:
        """The A/B scheme as stored; :class:`BootEnvCorrupt` if it is not there."""
        try:
            return BootState.parse(self.read())
        except SchemeError as exc:
            raise BootEnvCorrupt(
                f"{self.description}: not a Redstone A/B environment ({exc}); "
                "initialise it with 'redstone-sub init-bootenv'"
            ) from None

    def save_state(self, state: BootState) -> None:
        """Write the whole scheme in one batch."""
        self.write(state.to_env())


def run_tool(argv: Sequence[str], package: str) -> subprocess.CompletedProcess[str]:
    """Run an env tool; a missing tool or a hang becomes a one-line BootloaderError."""
    try:
        return subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=TOOL_TIMEOUT_S,
            check=False,
            env={**os.environ, "LC_ALL": "C"},
        )
    except FileNotFoundError:
        raise BootloaderError(f"{argv[0]} not found: install {package}") from None
    except subprocess.TimeoutExpired:
        raise BootloaderError(f"{argv[0]} did not finish within {TOOL_TIMEOUT_S:.0f} s") from None


def first_line(text: str) -> str:
    """The first non-empty line of a tool's complaint, for a one-line error."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return "no message"


def parse_assignments(text: str) -> dict[str, str]:
    """``key=value`` lines into a dict; comments and other lines are skipped."""
    values = {}
    for line in text.splitlines():
        if line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key] = value
    return values
