"""Running simulators with the matching tester configuration for flashing tests."""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Callable, Iterator
from typing import Any, Literal

import pytest

from redstone_agent.ecusim.config import Faults, SimConfig, SimDoCan, SimDoIp, SimMemory
from redstone_agent.ecusim.runner import BackgroundSimulator
from redstone_agent.uds.config import EcuConfig, Region, Timing

REGION = Region("app", 0x0001_0000, 0x0002_0000)
_channels = itertools.count()
Make = Callable[..., tuple[BackgroundSimulator, EcuConfig]]


def image(version: str, size: int = 20_000) -> bytes:
    """An image whose first 16 bytes are its version, like the simulator expects."""
    body = bytes((i * 7 + len(version)) & 0xFF for i in range(size - 16))
    return version.encode().ljust(16, b"\0") + body


FAST_TIMING = Timing(p2=0.5, p2_star=2.0, max_pending=5.0, reconnect_delay=0.1, busy_delay=0.01)


@pytest.fixture
def simulated() -> Iterator[Callable[..., tuple[BackgroundSimulator, EcuConfig]]]:
    """``start(sim_config, compression=...)`` → running simulator + fast tester config."""
    started: list[BackgroundSimulator] = []

    def start(
        sim: SimConfig, compression: Literal["none", "zlib"] = "none", **ecu_changes: Any
    ) -> tuple[BackgroundSimulator, EcuConfig]:
        background = BackgroundSimulator(sim).__enter__()
        started.append(background)
        ecu = background.tester_config(timing=FAST_TIMING)
        programming = dataclasses.replace(
            ecu.programming, compression=compression, reset_settle=0.05
        )
        return background, dataclasses.replace(ecu, programming=programming, **ecu_changes)

    yield start
    for background in started:
        background.close()


def sim_config(faults: Faults | None, dual_bank: bool = False, **transport: Any) -> SimConfig:
    return SimConfig(
        "ecu",
        memory=SimMemory(regions=[REGION], dual_bank=dual_bank),
        faults=faults or Faults(),
        erase_time=0.02,
        reset_time=0.02,
        **transport,
    )


@pytest.fixture
def doip_pair(simulated: Make) -> Make:
    """``make(faults=..., dual_bank=..., compression=..., sim_changes=..., **ecu_changes)``."""

    def make(
        faults: Faults | None = None,
        dual_bank: bool = False,
        sim_changes: dict[str, Any] | None = None,
        **ecu_changes: Any,
    ) -> tuple[BackgroundSimulator, EcuConfig]:
        doip = SimDoIp(tcp_port=0, udp_port=0, max_block_length=0x2002)
        sim = sim_config(faults, dual_bank, doip=doip, **(sim_changes or {}))
        return simulated(sim, **ecu_changes)

    return make


@pytest.fixture
def docan_pair(simulated: Make) -> Make:
    """Simulator and tester on a private python-can ``virtual`` channel."""

    def make(
        faults: Faults | None = None,
        fd: bool = False,
        can: dict[str, Any] | None = None,
        **ecu_changes: Any,
    ) -> tuple[BackgroundSimulator, EcuConfig]:
        channel = f"uds-test-{os.getpid()}-{next(_channels)}"
        settings: dict[str, Any] = {"block_size": 0, "frame_length": 64 if fd else 8}
        docan = SimDoCan(interface="virtual", channel=channel, fd=fd, **(settings | (can or {})))
        return simulated(sim_config(faults, docan=docan), **ecu_changes)

    return make
