"""Waiting at gates and watching running steps: consent, vehicle state, user commands.

The engine asks :class:`Gatekeeper` before a step (``hold``) and runs a
step under it (``run_watched``). Both consult the injected
:class:`~redstone_agent.master.ports.Policy`, plus the operator's cancel or
rollback command, which turns every gate but ``RESTORE`` into a refusal.

* ``hold`` returns the first ALLOW or REFUSE; while the answer is WAIT it
  tells the engine (``on_wait``) each time the reason changes, then sleeps
  until the policy says something may have changed (a CAN signal, a consent,
  a command) or the poll interval passed.
* ``run_watched`` runs a step while watching its gate. A command always
  stops the step (it is cancelled: every ECU port operation is idempotent,
  so the rollback or a later re-run converges). A broken rule stops it only
  with ``interrupt=True`` (``[master.vehicle] on-break = "abort"``);
  otherwise the step finishes and only the ECUs not yet started wait.

No I/O here: time and the policy are injected.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from redstone_agent.aio import wait_event
from redstone_agent.master.ports import Cause, Decision, Gate, Policy, Verdict

T = TypeVar("T")
WaitFn = Callable[[Verdict], None]


class Changes:
    """A change counter many tasks can wait on without losing a wake-up.

    A waiter remembers :attr:`count` when it looks at the state and later waits
    only if nothing changed since; a change between the look and the wait
    returns at once (an :class:`asyncio.Event` cleared by one waiter would
    swallow it for the others).
    """

    def __init__(self) -> None:
        self.count = 0
        self._event = asyncio.Event()

    def bump(self) -> None:
        self.count += 1
        self._event.set()
        self._event = asyncio.Event()

    async def wait_past(self, seen: int, timeout_s: float) -> None:
        """Return when :attr:`count` moved past ``seen``, or after ``timeout_s``."""
        if self.count != seen:
            return
        await wait_event(self._event, timeout_s)


@dataclass(frozen=True)
class Interrupted:
    """A watched step was stopped; ``verdict`` says why (WAIT: again later; REFUSE: never)."""

    verdict: Verdict


class Gatekeeper:
    def __init__(
        self, policy: Policy, campaign: Callable[[], tuple[str, bool]], *, poll_s: float = 5.0
    ) -> None:
        self._policy = policy
        self._campaign = campaign
        """(campaign name, consent_required) of the running campaign."""
        self._poll_s = poll_s
        self._abort: str = ""
        self._changes = Changes()
        """Commands and nudges (the policy's own changes come from ``wait_change``)."""

    # -- operator commands -------------------------------------------------------

    @property
    def aborting(self) -> str:
        """The operator's reason while a cancel/rollback is pending ("" otherwise)."""
        return self._abort

    def abort(self, reason: str) -> None:
        self._abort = reason
        self._changes.bump()

    def reset(self) -> None:
        """A campaign ended: a pending command does not carry over to the next one."""
        self._abort = ""

    def nudge(self) -> None:
        """Something the policy depends on changed (a consent answer): ask again now."""
        self._changes.bump()

    # -- asking ------------------------------------------------------------------

    async def ask(self, gate: Gate) -> Verdict:
        if self._abort and gate is not Gate.RESTORE:
            return Verdict(Decision.REFUSE, self._abort, Cause.USER)
        name, consent_required = self._campaign()
        return await self._policy.check(gate, name, consent_required)

    async def pause(self, seen: int) -> None:
        """Until the policy or a command (past ``seen``) may have changed the answer,
        or the poll interval."""
        changed = asyncio.ensure_future(self._policy.wait_change(self._poll_s))
        woken = asyncio.ensure_future(self._changes.wait_past(seen, self._poll_s))
        try:
            await asyncio.wait({changed, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (changed, woken):
                task.cancel()
            await asyncio.gather(changed, woken, return_exceptions=True)

    async def hold(self, gate: Gate, on_wait: WaitFn) -> Verdict:
        """Wait at ``gate`` until the answer is ALLOW or REFUSE, and return it."""
        last: Verdict | None = None
        while True:
            seen = self._changes.count
            verdict = await self.ask(gate)
            if verdict.decision is not Decision.WAIT:
                return verdict
            if last is None or (verdict.reason, verdict.cause) != (last.reason, last.cause):
                on_wait(verdict)
                last = verdict
            await self.pause(seen)

    async def run_watched(
        self, gate: Gate | None, step: Awaitable[T], *, interrupt: bool
    ) -> T | Interrupted:
        """Run ``step``; stop it on a command (always) or a broken rule (``interrupt``)."""
        work = asyncio.ensure_future(step)
        watcher = asyncio.ensure_future(self._watch(gate, interrupt))
        try:
            await asyncio.wait({work, watcher}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            work.cancel()
            watcher.cancel()
            raise
        if work.done():
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            return work.result()
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await work  # the port stops cleanly (a UDS flash at its next block)
        return Interrupted(watcher.result())

    async def _watch(self, gate: Gate | None, interrupt: bool) -> Verdict:
        """Return the verdict that stops the step; never returns while it may go on."""
        watch_rules = gate is not None and interrupt
        while True:
            seen = self._changes.count
            if self._abort:
                return Verdict(Decision.REFUSE, self._abort, Cause.USER)
            if watch_rules:
                assert gate is not None
                verdict = await self.ask(gate)
                if verdict.decision is not Decision.ALLOW:
                    return verdict
                await self.pause(seen)
            else:
                await self._changes.wait_past(seen, self._poll_s)
