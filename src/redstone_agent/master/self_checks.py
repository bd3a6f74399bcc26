"""The real checks behind ``[master.self.health]`` and the TBox's reboot command.

Each check is a :class:`~redstone_agent.master.ports.HealthCheck` the engine
runs on the new TBox image after its reboot (``self_health.assess``): systemd
units active, the cloud answering, an integrator's command exiting 0. The
check that every other ECU of the campaign answers lives in the engine (it
uses the campaign's own ECU ports).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Callable, Sequence

from redstone_agent.master.errors import MasterError
from redstone_agent.master.ports import HealthCheck
from redstone_agent.master.topology import SelfHealthSettings
from redstone_agent.service import command

log = logging.getLogger(__name__)
CHECK_TIMEOUT_S = 30.0
"""One run of one check (a round is asked again until ``timeout-s``)."""


async def run_command(argv: Sequence[str], timeout: float = CHECK_TIMEOUT_S) -> tuple[bool, str]:
    """Run ``argv`` (no shell) for at most one check's time."""
    return await command.run_command(argv, timeout)


def health_checks(
    settings: SelfHealthSettings, cloud_answers: Callable[[], object]
) -> list[HealthCheck]:
    """The configured checks; ``cloud_answers`` is a blocking call that raises when the
    backend cannot be reached (the device client's nonce request)."""
    checks: list[HealthCheck] = []
    if settings.units:
        units = list(settings.units)
        systemctl = shutil.which("systemctl") or "systemctl"

        async def units_active() -> tuple[bool, str]:
            ok, why = await run_command([systemctl, "is-active", "--quiet", *units])
            return ok, "active" if ok else f"not all active ({', '.join(units)}): {why}"

        checks.append(HealthCheck("units", units_active))
    if settings.cloud:

        async def cloud_reachable() -> tuple[bool, str]:
            await asyncio.to_thread(cloud_answers)
            return True, "answers"

        checks.append(HealthCheck("cloud", cloud_reachable))
    if settings.command:
        argv = list(settings.command)

        async def command() -> tuple[bool, str]:
            return await run_command(argv)

        checks.append(HealthCheck("command", command))
    return checks


async def reboot(argv: Sequence[str]) -> None:
    """Ask the system to reboot with ``argv``; a failure to ask is a one-line error."""
    log.warning("rebooting the TBox: %s", " ".join(argv))
    ok, why = await run_command(argv)
    if not ok:
        raise MasterError(f"reboot command failed: {why}")
