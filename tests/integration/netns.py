"""The lab network now lives in the product (``redstone_agent.vvehicle.netlab``);
this module keeps the old import path for the existing tests."""

from __future__ import annotations

from redstone_agent.vvehicle.netlab import (
    SD_ADDRESS,
    SD_PORT,
    SUBNET,
    Node,
    Scaffold,
    SomeIpLab,
    stop_process,
)

__all__ = ["SD_ADDRESS", "SD_PORT", "SUBNET", "Node", "Scaffold", "SomeIpLab", "stop_process"]
