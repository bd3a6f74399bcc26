"""The new TBox image's health check: every check passes, or it is rejected with the reason.

Runs on the new slot right after the TBox's own reboot (state *tbox-trial*).
A freshly booted system needs a moment (units starting, the link to the
cloud, Subs finding the new SOME/IP daemon), so failing checks are asked
again every ``interval_s`` until ``timeout_s`` has passed since the first
round; only then is the image rejected, with the first check that still
fails. I/O-free: the checks, the clock and the sleep are injected.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from redstone_agent.master.ports import Clock, HealthCheck

log = logging.getLogger(__name__)


async def run_checks(checks: Sequence[HealthCheck]) -> tuple[bool, str]:
    """One round: the first failing check and why, or what passed."""
    for check in checks:
        try:
            ok, why = await check.run()
        except Exception as exc:  # a check that cannot run has failed
            ok, why = False, _one_line(exc)
        if not ok:
            return False, f"{check.name}: {why}"
    names = ", ".join(c.name for c in checks) or "no checks configured"
    return True, f"healthy ({names})"


async def assess(
    checks: Sequence[HealthCheck],
    *,
    clock: Clock,
    sleep: Callable[[float], Awaitable[None]],
    timeout_s: float,
    interval_s: float,
    stopped: Callable[[], str] = lambda: "",
) -> tuple[bool, str]:
    """Rounds of :func:`run_checks` until one passes, ``timeout_s`` is over, or
    ``stopped()`` names a reason to give up (an operator's cancel)."""
    deadline = clock() + timeout_s
    while True:
        reason = stopped()
        if reason:
            return False, reason
        ok, why = await run_checks(checks)
        if ok:
            return True, why
        if clock() >= deadline:
            return False, f"{why} (still failing after {timeout_s:g} s)"
        log.info("TBox health check not passed yet, asking again in %g s: %s", interval_s, why)
        await sleep(interval_s)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
