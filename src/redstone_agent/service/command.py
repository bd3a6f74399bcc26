"""Running a check command from a daemon: exit status plus one line that says why."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence


async def run_command(argv: Sequence[str], timeout: float) -> tuple[bool, str]:
    """Run ``argv`` (no shell): (exited 0, one line with its status and last output line).

    A command that cannot start or overruns ``timeout`` (it is killed) is a failure
    with its own one-line reason; output goes nowhere else.
    """
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
    except OSError as exc:
        return False, f"{argv[0]}: cannot run: {exc.strerror or exc}"
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return False, f"{argv[0]}: timed out after {timeout:g} s"
    lines = out.decode(errors="replace").strip().splitlines()
    tail = f": {lines[-1]}" if lines else ""
    return proc.returncode == 0, f"{argv[0]} exited {proc.returncode}{tail}"
