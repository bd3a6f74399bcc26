"""Power cut after every journaled step of an update: the node always boots, the update lands.

A Mender-style sweep: for each k, the k-th journal write of the cycle is the
last thing that happens before the power goes. The virtual bootloader then
picks a slot, the engine recovers from its journal, and a persistent Master
keeps driving (re-sending metadata/Install, Activate, Commit as the reported
state asks). Every boot must land on a slot holding a complete image (old or
new) and every sweep must end COMMITTED on the new image.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from redstone_agent.journal import Journal
from redstone_agent.someip.interface import SubState
from redstone_agent.someip.messages import InstallRequest
from tests.unit.sub.node_bench import Bench, make_bench

pytestmark = pytest.mark.slow
S = SubState
SLOT_SIZE = 1 << 20


class PowerCut(BaseException):
    """The power went: nothing after this point happened."""


class Budget:
    """Journal saves left before the (single) power cut, counted across boots."""

    def __init__(self, saves: int) -> None:
        self.left = saves


class CuttingJournal(Journal):
    """Dies right after the budget's last save reached the disk."""

    def __init__(self, path: Path, budget: Budget) -> None:
        super().__init__(path)
        self.budget = budget
        self.cut = asyncio.Event()

    def save(self, state: dict[str, Any]) -> None:
        super().save(state)
        self.budget.left -= 1
        if self.budget.left == 0:
            self.cut.set()
            raise PowerCut


async def run_boot(bench: Bench, request: InstallRequest, budget: Budget) -> str:
    """One boot of the node; returns "committed", "reboot" or "cut"."""
    journal = CuttingJournal(bench.journal_path, budget)
    engine = bench.engine(journal)
    reboots = bench.reboots

    async def master() -> str:
        await engine.recover()
        for _ in range(400):
            state = engine.state
            if state is S.COMMITTED and engine.info().current_target == request.target:
                return "committed"
            if state in (S.IDLE, S.FAILED, S.ROLLED_BACK, S.COMMITTED):
                await engine.put_metadata(bench.sim.bundle().to_bytes())
                await engine.install(request)
            elif state is S.READY:
                await engine.activate()
            elif state is S.VERIFYING and "awaiting commit" in engine.status().detail:
                await engine.commit()
            if bench.reboots != reboots or state in (S.ACTIVATING, S.ROLLING_BACK):
                await asyncio.sleep(0.4)  # the delayed reboot fires
                if bench.reboots != reboots:
                    return "reboot"
            await asyncio.sleep(0.01)
        raise AssertionError(f"no progress from {engine.state.name}")

    task = asyncio.ensure_future(master())
    cut = asyncio.ensure_future(journal.cut.wait())
    done, _ = await asyncio.wait({task, cut}, return_when=asyncio.FIRST_COMPLETED)
    if cut in done:
        task.cancel()
        await engine.close()
        await asyncio.gather(task, return_exceptions=True)
        return "cut"
    cut.cancel()
    return task.result()


def booted_image_is_whole(bench: Bench, slot: str, old: bytes, new: bytes) -> bool:
    data = bench.node.config.device(slot).read_bytes()[: len(new)]
    return data in (old[: len(new)], new)


SAVES_PER_CYCLE = 10
"""IDLE, metadata, TRANSFERRING, PROCESSING, READY, ACTIVATING ×2, VERIFYING ×2, COMMITTED."""


@pytest.mark.parametrize("cut_after", range(1, SAVES_PER_CYCLE + 1))
def test_power_cut_after_each_step(tmp_path: Path, cut_after: int) -> None:
    bench = make_bench(tmp_path)
    old = bench.node.config.A.device.read_bytes()
    new = os.urandom(64 << 10)
    request = bench.publish("v1.img", new, 1)
    budget = Budget(cut_after)
    outcomes = []
    for _ in range(10):
        outcomes.append(asyncio.run(run_boot(bench, request, budget)))
        if outcomes[-1] == "committed":
            break
        slot = bench.node.reboot()
        assert booted_image_is_whole(bench, slot, old, new), f"torn slot {slot} after {outcomes}"
    assert outcomes[-1] == "committed", outcomes
    assert "cut" in outcomes
    booted = bench.node.reboot()
    assert bench.node.config.device(booted).read_bytes()[: len(new)] == new
