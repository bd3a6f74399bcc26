"""The legacy ECUs: ``redstone-ecusim`` processes on their own lab nodes.

A simulator keeps its flash in memory, so a restart is a factory reset to
the version named in its file. To inject a fault (campaign 2) we restart it
with ``[faults]`` set and ``initial_version`` = the version it runs now:
from the Master's side the ECU is unchanged, it just fails its next check
routine. Both ECUs are dual-bank, so a failed flash leaves the running bank
alone and a rollback is a bank switch.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from redstone_agent.uptane.keys import save_signer
from redstone_agent.uptane.tufapi import CryptoSigner
from redstone_agent.vvehicle.errors import LabError
from redstone_agent.vvehicle.netlab import Node, executable, stop_process
from redstone_agent.vvehicle.plan import EcuPlan, sim_toml, uds_ecu_toml

READY_TIMEOUT = 20.0


@dataclass
class UdsEcu:
    """One simulated ECU and the files the Master needs to flash it."""

    ecu: EcuPlan
    net: Node
    signer: CryptoSigner
    proc: subprocess.Popen[bytes] | None = None

    @property
    def workdir(self) -> Path:
        return self.net.workdir

    @property
    def tester_config(self) -> Path:
        """The Master's UDS file for this ECU (``uds-config`` in master.toml)."""
        return self.workdir / f"{self.ecu.role}.toml"

    @property
    def sim_config(self) -> Path:
        return self.workdir / f"sim-{self.ecu.role}.toml"

    @property
    def key(self) -> Path:
        """Signs this ECU's version manifest (the Master signs on its behalf)."""
        return self.workdir / "ecu.pem"

    @property
    def log(self) -> Path:
        return self.workdir / "ecusim.log"

    def start(self, version: str, faults: Mapping[str, object] | None = None) -> None:
        """(Re)start the simulator running *version*, with *faults* injected."""
        self.stop()
        self.sim_config.write_text(
            sim_toml(self.ecu, address=self.net.ip, version=version, faults=faults or {})
        )
        self.log.write_text("")
        self.proc = self.net.spawn(
            [executable("redstone-ecusim"), str(self.sim_config), "--json"], log=self.log
        )
        deadline = time.monotonic() + READY_TIMEOUT
        while not self._ready():
            if self.proc.poll() is not None:
                raise LabError(f"redstone-ecusim {self.ecu.role} exited: see {self.log}")
            if time.monotonic() > deadline:
                raise LabError(f"redstone-ecusim {self.ecu.role} not ready: see {self.log}")
            time.sleep(0.05)

    def _ready(self) -> bool:
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    return bool(json.loads(line).get("name") == self.ecu.role)
                except ValueError:
                    continue
        return False

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, grace=5.0)
            self.proc = None


def provision_uds(ecu: EcuPlan, net: Node, signer: CryptoSigner) -> UdsEcu:
    """Key and tester file for one UDS ECU (the simulator starts separately)."""
    uds = UdsEcu(ecu, net, signer)
    save_signer(signer, uds.key)
    uds.tester_config.write_text(uds_ecu_toml(ecu, address=net.ip))
    return uds


def read_version(uds: UdsEcu, on: Node) -> str:
    """The ECU's version DID, read from node *on* (where the Master runs)."""
    out = on.run([sys.executable, "-m", "redstone_agent.vvehicle.probe", str(uds.tester_config)])
    return str(json.loads(out.strip().splitlines()[-1])["version"])
