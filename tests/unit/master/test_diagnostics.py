"""The Master's diagnostics rules: snapshots, their journal form, the diff and its report."""

from __future__ import annotations

import asyncio
import json

import pytest

from redstone_agent.master.diagnostics import (
    Change,
    DtcChange,
    DtcDiff,
    EcuDiagnosis,
    EcuDiff,
    Snapshot,
    VersionChange,
    clear_new_dtcs,
    diff,
    report,
    summary,
    take_snapshot,
)
from redstone_agent.uds.diagnostics import Dtc
from redstone_agent.uds.errors import NegativeResponseError, TransportError

V1 = {"0xF189": "1.0.0", "0xF195": "SUP-1"}
V2 = {"0xF189": "2.0.0", "0xF195": "SUP-1"}
HISTORIC = Dtc(0xC14000, 0x28)  # U0140-00: confirmed, not failing now
ACTIVE = Dtc(0x912311, 0x09)


def ecu(*dtcs: Dtc, versions: dict[str, str] = V1, error: str = "") -> EcuDiagnosis:
    return EcuDiagnosis("BCM-01", versions, tuple(dtcs), error)


def one(before: EcuDiagnosis | None, after: EcuDiagnosis | None) -> EcuDiff:
    snap = [Snapshot.of([d]) if d else Snapshot() for d in (before, after)]
    return diff(snap[0], snap[1]).ecus["BCM-01"]


def test_dtc_formats() -> None:
    dtc = Dtc(0x9A0B1C, 0x2F)
    assert (dtc.hex, dtc.display, str(dtc)) == (
        "0x9A0B1C",
        "B1A0B-1C",
        "0x9A0B1C (B1A0B-1C) status 0x2F",
    )
    assert [Dtc(c, 0).display for c in (0x012345, 0x412345, 0xC07300)] == [
        "P0123-45",
        "C0123-45",
        "U0073-00",
    ]
    assert dtc.status_names == [
        "testFailed",
        "testFailedThisOperationCycle",
        "pendingDTC",
        "confirmedDTC",
        "testFailedSinceLastClear",
    ]
    assert Dtc.from_dict(dtc.to_dict()) == dtc == Dtc.from_dict({"code": 0x9A0B1C, "status": 47})
    with pytest.raises(ValueError, match="3-byte"):
        Dtc(0x1000000, 0)


def test_snapshot_round_trips_through_json() -> None:
    snapshot = Snapshot.of(
        [
            ecu(HISTORIC, ACTIVE),
            EcuDiagnosis("GW-01", error="ECU gateway: read DTCs timed out"),
            EcuDiagnosis("ABS-01"),
        ],
        status_mask=0x2F,
    )
    assert Snapshot.from_dict(json.loads(json.dumps(snapshot.to_dict()))) == snapshot
    assert Snapshot.from_dict({}) == Snapshot()


def test_a_new_code_appears() -> None:
    new = Dtc(0x9A0B1C, 0x2F)
    result = one(ecu(HISTORIC), ecu(HISTORIC, new, versions=V2))
    assert result.appeared == (DtcChange(0x9A0B1C, Change.NEW, None, 0x2F),)
    assert result.cleared == ()
    assert result.versions == (VersionChange("0xF189", "1.0.0", "2.0.0"),)
    assert result.new_codes == [0x9A0B1C] and not result.unknown


def test_a_historic_dtc_failing_again_escalates() -> None:
    failing = Dtc(HISTORIC.code, 0x29)  # gained testFailed
    result = one(ecu(HISTORIC), ecu(failing))
    assert result.appeared == (DtcChange(HISTORIC.code, Change.ESCALATED, 0x28, 0x29),)


@pytest.mark.parametrize(
    "after",
    [
        Dtc(HISTORIC.code, 0x28),  # unchanged
        Dtc(HISTORIC.code, 0x2C),  # only pendingDTC gained: not testFailed/confirmedDTC
        Dtc(HISTORIC.code, 0x08),  # lost bits
    ],
)
def test_other_status_changes_are_not_new(after: Dtc) -> None:
    result = one(ecu(HISTORIC), ecu(after))
    assert result == EcuDiff("BCM-01")


def test_a_dtc_gone_after_is_cleared() -> None:
    result = one(ecu(HISTORIC, ACTIVE), ecu(HISTORIC))
    assert result.cleared == (DtcChange(ACTIVE.code, Change.CLEARED, 0x09, None),)
    assert result.appeared == ()


def test_unchanged_ecu_has_an_empty_diff() -> None:
    assert one(ecu(HISTORIC, ACTIVE), ecu(ACTIVE, HISTORIC)) == EcuDiff("BCM-01")


@pytest.mark.parametrize(
    ("before", "after", "unknown"),
    [
        (ecu(error="ECU bcm: cannot connect"), ecu(ACTIVE), "before: ECU bcm: cannot connect"),
        (ecu(), ecu(error="ECU bcm: read DTCs timed out"), "after: ECU bcm: read DTCs timed out"),
        (None, ecu(ACTIVE), "before: not diagnosed"),
        (ecu(ACTIVE), None, "after: not diagnosed"),
        (ecu(error="x"), ecu(error="y"), "before: x; after: y"),
    ],
)
def test_unreachable_ecu_attributes_nothing_to_the_update(
    before: EcuDiagnosis | None, after: EcuDiagnosis | None, unknown: str
) -> None:
    result = one(before, after)
    assert (result.appeared, result.cleared, result.unknown) == ((), (), unknown)
    assert not diff(
        Snapshot.of([before] if before else []), Snapshot.of([after] if after else [])
    ).has_new_dtcs


def test_versions_of_a_half_answered_ecu_compare_only_what_both_read() -> None:
    partial = ecu(versions={"0xF189": "2.0.0"}, error="ECU bcm: read DTCs timed out")
    assert one(ecu(), partial).versions == (VersionChange("0xF189", "1.0.0", "2.0.0"),)
    # complete on both sides: a DID that vanished is a change
    assert one(ecu(), ecu(versions={"0xF189": "1.0.0"})).versions == (
        VersionChange("0xF195", "SUP-1", None),
    )


def two_ecus() -> DtcDiff:
    before = Snapshot.of([ecu(HISTORIC), EcuDiagnosis("GW-01", {"0xF189": "7"})])
    after = Snapshot.of(
        [
            ecu(HISTORIC, Dtc(0x9A0B1C, 0x2F), versions=V2),
            EcuDiagnosis("GW-01", error="ECU gateway: cannot connect"),
        ]
    )
    return diff(before, after)


def test_report_is_json_for_the_campaign_report() -> None:
    result = two_ecus()
    assert result.new_dtcs == {"BCM-01": [0x9A0B1C]} and result.has_new_dtcs
    assert json.loads(json.dumps(report(result))) == {
        "new_dtcs": 1,
        "summary": "1 new DTC: BCM-01 B1A0B-1C (not compared: GW-01)",
        "ecus": {
            "BCM-01": {
                "appeared": [
                    {
                        "code": "0x9A0B1C",
                        "display": "B1A0B-1C",
                        "change": "new",
                        "status_before": None,
                        "status_after": "0x2F",
                    }
                ],
                "cleared": [],
                "versions": {"0xF189": {"before": "1.0.0", "after": "2.0.0"}},
            },
            "GW-01": {
                "appeared": [],
                "cleared": [],
                "versions": {},
                "unknown": "after: ECU gateway: cannot connect",
            },
        },
    }
    assert summary(DtcDiff()) == "0 new DTCs"


class FakePort:
    def __init__(self, serial: str, answer: EcuDiagnosis | Exception) -> None:
        self.serial = serial
        self.answer = answer
        self.cleared: list[list[int]] = []

    async def diagnose(self, status_mask: int) -> EcuDiagnosis:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    async def clear_dtcs(self, codes: list[int]) -> None:
        if isinstance(self.answer, Exception):
            raise self.answer
        self.cleared.append(codes)


def test_take_snapshot_turns_a_raising_port_into_an_error() -> None:
    ports = [FakePort("BCM-01", ecu(ACTIVE)), FakePort("GW-01", TransportError("GW gone\nreally"))]
    snapshot = asyncio.run(take_snapshot(ports, 0x09))
    assert snapshot == Snapshot.of([ecu(ACTIVE), EcuDiagnosis("GW-01", error="GW gone really")])


def test_clear_new_dtcs_reports_each_ecu() -> None:
    bcm = FakePort("BCM-01", ecu())
    gateway = FakePort("GW-01", NegativeResponseError("gateway", "clear DTC 0x9A0B1C", 0x31))
    result = DtcDiff(
        {
            "BCM-01": EcuDiff("BCM-01", (DtcChange(0x9A0B1C, Change.NEW, None, 0x2F),)),
            "GW-01": EcuDiff("GW-01", (DtcChange(0x9A0B1C, Change.NEW, None, 0x2F),)),
            "ABS-01": EcuDiff("ABS-01", (DtcChange(0x012345, Change.NEW, None, 0x09),)),
            "TCM-01": EcuDiff("TCM-01"),
        }
    )
    outcome = asyncio.run(clear_new_dtcs({"BCM-01": bcm, "GW-01": gateway}, result))
    assert outcome == {
        "BCM-01": "cleared B1A0B-1C",
        "GW-01": "not cleared: ECU gateway: clear DTC 0x9A0B1C refused with NRC 0x31 "
        "requestOutOfRange",
        "ABS-01": "not cleared: no diagnostic port",
    }
    assert bcm.cleared == [[0x9A0B1C]]
