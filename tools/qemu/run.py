"""Running host tools with one-line errors naming the step that failed."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from tools.qemu.errors import HarnessError

TOOL_TIMEOUT_S = 300.0
EMULATED_TIMEOUT_S = 3600.0
"""A chroot of another architecture runs every instruction under qemu-user."""


def run(
    argv: Sequence[str | Path], *, cwd: Path | None = None, timeout: float = TOOL_TIMEOUT_S
) -> str:
    """Run a tool to completion and return its stdout as text."""
    return run_bytes(argv, cwd=cwd, timeout=timeout).decode(errors="replace")


def run_bytes(
    argv: Sequence[str | Path],
    *,
    cwd: Path | None = None,
    stdin: bytes | None = None,
    timeout: float = TOOL_TIMEOUT_S,
) -> bytes:
    """Run a tool to completion and return its stdout; raise HarnessError otherwise.
    ``timeout``: longer for steps a foreign chroot runs under qemu-user."""
    args = [str(a) for a in argv]
    try:
        done = subprocess.run(
            args,
            cwd=cwd,
            input=stdin,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise HarnessError(f"{args[0]} not found (see tools/debian-packages.txt)") from None
    except subprocess.TimeoutExpired:
        raise HarnessError(f"{args[0]} did not finish within {timeout:.0f} s") from None
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines() or ["no message"]
        raise HarnessError(f"{' '.join(args[:3])} failed ({done.returncode}): {lines[-1]}")
    return done.stdout
