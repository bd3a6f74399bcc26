"""UDS diagnostics around a campaign, through the engine: read before, diff after,
report, event, and clearing only where the policy says so.

The diagnostic ports are doubles that set a DTC when their ECU is flashed
(the real UdsPort against the ECU simulator is in tests/integration/uds)."""

from __future__ import annotations

from pathlib import Path

from redstone_agent.master.diagnostics import EcuDiagnosis
from redstone_agent.master.states import CampaignState
from redstone_agent.uds.diagnostics import Dtc
from tests.unit.master.fakes import FakeEcu, Vehicle, run

S = CampaignState
STORED = Dtc(0x9A0B1C, 0x08)
SET_BY_FLASH = Dtc(0xC10100, 0x2F)


class FaultMemory:
    """The BCM's fault memory: a DTC appears when its new image runs."""

    def __init__(self, ecu: FakeEcu) -> None:
        self.serial = ecu.serial
        self.ecu = ecu
        self.cleared: list[int] = []
        self.unreachable = False

    async def diagnose(self, status_mask: int) -> EcuDiagnosis:
        if self.unreachable:
            return EcuDiagnosis(self.serial, error=f"{self.serial}: no answer to 0x19")
        dtcs = [STORED]
        if self.ecu.written.endswith("-v2") or self.ecu.running.endswith("-v2"):
            dtcs.append(SET_BY_FLASH)
        dtcs = [d for d in dtcs if d.code not in self.cleared]
        return EcuDiagnosis(self.serial, {"F189": self.ecu.running}, tuple(dtcs))

    async def clear_dtcs(self, codes: list[int]) -> None:
        self.cleared += codes


def test_a_dtc_set_during_the_update_is_reported_and_cleared_when_told(tmp_path: Path) -> None:
    vehicle = Vehicle(tmp_path)
    memory = FaultMemory(vehicle.ecus["BCM-1"])
    engine = vehicle.engine(diagnostics={"BCM-1": memory}, clear_new_dtcs=True)
    run(engine.check())
    assert engine.state is S.DONE
    diagnostics = engine.record.last_report["diagnostics"]  # type: ignore[index]
    assert diagnostics["new_dtcs"] == 1
    assert [c["code"] for c in diagnostics["ecus"]["BCM-1"]["appeared"]] == ["0xC10100"]
    assert memory.cleared == [0xC10100]  # only the new one, never the stored one
    assert vehicle.cloud is not None
    assert "dtc_report" in [kind for kind, _ in vehicle.cloud.events]


def test_dtcs_are_not_cleared_by_default_nor_after_a_rollback(tmp_path: Path) -> None:
    vehicle = Vehicle(tmp_path)
    memory = FaultMemory(vehicle.ecus["BCM-1"])
    engine = vehicle.engine(diagnostics={"BCM-1": memory})
    run(engine.check())
    assert engine.record.last_report["diagnostics"]["new_dtcs"] == 1  # type: ignore[index]
    assert memory.cleared == []

    failing = Vehicle(tmp_path / "rollback")
    (tmp_path / "rollback").mkdir()
    failing.ecus["ADAS-1"].fail = "activate"
    memory = FaultMemory(failing.ecus["BCM-1"])
    engine = failing.engine(diagnostics={"BCM-1": memory}, clear_new_dtcs=True)
    run(engine.check())
    assert engine.state is S.FAILED
    assert memory.cleared == []


def test_an_ecu_that_cannot_answer_is_not_blamed(tmp_path: Path) -> None:
    vehicle = Vehicle(tmp_path)
    memory = FaultMemory(vehicle.ecus["BCM-1"])
    memory.unreachable = True
    engine = vehicle.engine(diagnostics={"BCM-1": memory}, clear_new_dtcs=True)
    run(engine.check())
    assert engine.state is S.DONE
    diagnostics = engine.record.last_report["diagnostics"]  # type: ignore[index]
    assert diagnostics["new_dtcs"] == 0
    assert "BCM-1" in diagnostics["ecus"]["BCM-1"]["unknown"]
    assert memory.cleared == []
