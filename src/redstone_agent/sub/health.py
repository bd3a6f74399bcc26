"""The post-boot health check that decides between commit and fallback.

``boot-complete.target`` among ``[sub.health] units`` means systemd's boot
assessment judges the trial boot (docs/systemd.md §3): the check *starts* the
target and waits for its job — it is reached once ``redstone-health.service``
and every product check required by it succeeded, and its job fails as soon as
one of them fails — instead of only asking whether it is active (it never is
this early in a boot). The daemon then reports READY before it recovers
(``daemon.py``), or the boot would wait for the Sub and the Sub for the boot.
"""

from __future__ import annotations

import logging
import shutil

from redstone_agent.service.command import run_command
from redstone_agent.sub.config import HealthConfig

log = logging.getLogger(__name__)
BOOT_COMPLETE = "boot-complete.target"


async def check_health(config: HealthConfig) -> tuple[bool, str]:
    """Return (healthy, one-line reason). Every configured check must pass."""
    systemctl = shutil.which("systemctl") or "systemctl"
    if BOOT_COMPLETE in config.units:
        ok, why = await run_command([systemctl, "start", BOOT_COMPLETE], config.timeout)
        if not ok:
            return False, f"boot assessment failed ({BOOT_COMPLETE} not reached): {why}"
    if config.units:
        ok, why = await run_command(
            [systemctl, "is-active", "--quiet", *config.units], config.timeout
        )
        if not ok:
            return False, f"units not active ({', '.join(config.units)}): {why}"
    if config.command:
        ok, why = await run_command(list(config.command), config.timeout)
        if not ok:
            return False, f"health command failed: {why}"
    return True, "healthy"
