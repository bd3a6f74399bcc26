"""The tester-side ECU configuration that matches a simulator configuration.

Whoever starts a simulator (tests, benchmarks, the virtual vehicle, a user
trying the flasher) needs the flasher's :class:`EcuConfig` for it; deriving it
keeps addresses, security and regions in one place.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from redstone_agent.ecusim.config import SimConfig
from redstone_agent.uds.config import (
    Dids,
    DoCanSettings,
    DoIpSettings,
    EcuConfig,
    Programming,
    SecuritySettings,
)


def tester_config(
    sim: SimConfig, *, tcp_port: int | None = None, udp_port: int | None = None, **changes: Any
) -> EcuConfig:
    """An :class:`EcuConfig` that flashes ``sim``; DoIP is preferred when both are served.

    ``tcp_port``/``udp_port`` give the ports actually bound (when the simulator
    asked for port 0); ``changes`` replace top-level fields of the result.
    """
    security = SecuritySettings(sim.security.level, sim.security.algorithm, sim.security.params)
    common: dict[str, Any] = {
        "regions": list(sim.memory.regions),
        "security": security,
        "routines": sim.routines,
        "dids": Dids(version=sim.version_did, fingerprint=sim.fingerprint_did),
        "programming": Programming(dual_bank=sim.memory.dual_bank),
    }
    if sim.doip is not None:
        doip = DoIpSettings(
            host=sim.doip.host,
            tcp_port=sim.doip.tcp_port if tcp_port is None else tcp_port,
            udp_port=sim.doip.udp_port if udp_port is None else udp_port,
            logical_address=sim.doip.logical_address,
        )
        ecu = EcuConfig(sim.name, "doip", doip=doip, **common)
    else:
        assert sim.docan is not None  # SimConfig insists on one transport
        fields = {f.name for f in dataclasses.fields(DoCanSettings)}
        docan = DoCanSettings(**{k: v for k, v in vars(sim.docan).items() if k in fields})
        ecu = EcuConfig(sim.name, "docan", docan=docan, **common)
    return dataclasses.replace(ecu, **changes)
