"""Matching simulator and tester configurations for flashing tests."""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Callable
from typing import Any, Literal

import pytest

from redstone_agent.ecusim.config import Faults, SimConfig, SimDoCan, SimDoIp, SimMemory
from redstone_agent.ecusim.runner import BackgroundSimulator
from redstone_agent.uds.config import (
    DoCanSettings,
    DoIpSettings,
    EcuConfig,
    Programming,
    Region,
    SecuritySettings,
    Timing,
)

REGION = Region("app", 0x0001_0000, 0x0002_0000)
MASK = {"mask": "5a3c9ee1"}
_channels = itertools.count()


def image(version: str, size: int = 20_000) -> bytes:
    """An image whose first 16 bytes are its version, like the simulator expects."""
    body = bytes((i * 7 + len(version)) & 0xFF for i in range(size - 16))
    return version.encode().ljust(16, b"\0") + body


def fast_timing(**changes: Any) -> Timing:
    return dataclasses.replace(
        Timing(p2=0.3, p2_star=2.0, max_pending=5.0, reconnect_delay=0.1, busy_delay=0.01),
        **changes,
    )


Pair = Callable[..., tuple[BackgroundSimulator, EcuConfig]]


@pytest.fixture
def doip_pair() -> Any:
    """``make(faults=..., dual_bank=..., **ecu_changes)`` → running simulator + tester config."""
    started: list[BackgroundSimulator] = []

    def make(
        faults: Faults | None = None,
        dual_bank: bool = False,
        compression: Literal["none", "zlib"] = "none",
        sim_changes: dict[str, Any] | None = None,
        **ecu_changes: Any,
    ) -> tuple[BackgroundSimulator, EcuConfig]:
        sim = SimConfig(
            "ecu",
            doip=SimDoIp(tcp_port=0, udp_port=0, max_block_length=0x2002),
            memory=SimMemory(regions=[REGION], dual_bank=dual_bank),
            faults=faults or Faults(),
            erase_time=0.02,
            reset_time=0.02,
            **(sim_changes or {}),
        )
        background = BackgroundSimulator(sim).__enter__()
        started.append(background)
        ecu = EcuConfig(
            "ecu",
            "doip",
            [REGION],
            doip=DoIpSettings(
                host="127.0.0.1", tcp_port=background.doip_port, udp_port=background.udp_port
            ),
            security=SecuritySettings(params=MASK),
            timing=fast_timing(),
            programming=Programming(
                dual_bank=dual_bank, compression=compression, reset_settle=0.05
            ),
        )
        return background, dataclasses.replace(ecu, **ecu_changes)

    yield make
    for background in started:
        background.close()


@pytest.fixture
def docan_pair() -> Any:
    """Simulator and tester on a private python-can ``virtual`` channel."""
    started: list[BackgroundSimulator] = []

    def make(
        faults: Faults | None = None, fd: bool = False, **ecu_changes: Any
    ) -> tuple[BackgroundSimulator, EcuConfig]:
        channel = f"uds-test-{os.getpid()}-{next(_channels)}"
        can: dict[str, Any] = {
            "interface": "virtual",
            "channel": channel,
            "block_size": 0,
            "fd": fd,
            "frame_length": 64 if fd else 8,
        }
        sim = SimConfig(
            "ecu",
            docan=SimDoCan(**can),
            memory=SimMemory(regions=[REGION]),
            faults=faults or Faults(),
            erase_time=0.02,
            reset_time=0.02,
        )
        background = BackgroundSimulator(sim).__enter__()
        started.append(background)
        ecu = EcuConfig(
            "ecu",
            "docan",
            [REGION],
            docan=DoCanSettings(**can),
            security=SecuritySettings(params=MASK),
            timing=fast_timing(),
            programming=Programming(reset_settle=0.05),
        )
        return background, dataclasses.replace(ecu, **ecu_changes)

    yield make
    for background in started:
        background.close()
