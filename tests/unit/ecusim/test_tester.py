"""A simulator config yields the tester config that matches it."""

from __future__ import annotations

from pathlib import Path

from redstone_agent.ecusim import tester
from redstone_agent.ecusim.config import load_sim

EXAMPLES = Path(__file__).resolve().parents[3] / "etc" / "redstone" / "ecus"


def test_docan_simulator_gives_same_ids_security_and_regions() -> None:
    sim = load_sim(EXAMPLES / "sim-bcm.toml")
    ecu = tester.tester_config(sim)
    assert ecu.transport == "docan"
    assert (ecu.docan.interface, ecu.docan.channel) == ("virtual", "redstone-sim")
    assert (ecu.docan.tx_id, ecu.docan.rx_id, ecu.docan.block_size) == (0x7E0, 0x7E8, 16)
    assert ecu.security.params == {"mask": "5a3c9ee1"}
    assert ecu.regions == sim.memory.regions


def test_doip_simulator_uses_the_bound_ports_and_bank_layout() -> None:
    sim = load_sim(EXAMPLES / "sim-gateway.toml")
    ecu = tester.tester_config(sim, tcp_port=40001, udp_port=40002, name="gw2")
    assert (ecu.name, ecu.transport) == ("gw2", "doip")
    assert (ecu.doip.host, ecu.doip.tcp_port, ecu.doip.udp_port) == ("127.0.0.1", 40001, 40002)
    assert ecu.programming.dual_bank
    assert ecu.security.algorithm == "aes-cmac"
