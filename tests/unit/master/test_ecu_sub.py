"""The Sub port's pure rules: where a Sub stands, the Install it gets, one-line failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from redstone_agent.master.ecu_sub import failure, install_request, standing_of
from redstone_agent.master.ports import DeltaImage, EcuJob, EcuStanding, Image
from redstone_agent.someip.interface import ResultCode, SubState
from redstone_agent.someip.messages import Status

S = SubState
E = EcuStanding
NEW, OLD = "adas-2.0.img", "adas-1.0.img"
HEALTHY = "healthy; awaiting commit"


@pytest.mark.parametrize(
    ("state", "target", "current", "detail", "expected"),
    [
        (S.IDLE, "", OLD, "", E.OLD),
        (S.IDLE, NEW, OLD, "install cancelled", E.OLD),  # a cancel keeps the request's target
        (S.IDLE, NEW, NEW, "", E.NEW),
        (S.COMMITTED, NEW, NEW, "committed", E.NEW),
        (S.COMMITTED, OLD, OLD, "committed", E.OLD),
        (S.ROLLED_BACK, OLD, OLD, "health command failed", E.OLD),
        (S.FAILED, NEW, OLD, "download failed", E.OLD),  # the running slot was never switched
        (S.TRANSFERRING, NEW, OLD, "", E.INSTALLING),
        (S.PROCESSING, NEW, OLD, "", E.INSTALLING),
        (S.TRANSFERRING, "other.img", OLD, "", E.OLD),
        (S.READY, NEW, OLD, "", E.INSTALLED),
        (S.READY, "other.img", OLD, "", E.OLD),
        (S.ACTIVATING, NEW, OLD, "rebooting into the new slot", E.INSTALLED),
        (S.VERIFYING, NEW, OLD, "running health check", E.INSTALLED),
        (S.VERIFYING, NEW, OLD, HEALTHY, E.TRIAL),
        (S.VERIFYING, "other.img", OLD, HEALTHY, E.FAILED),
        (S.ROLLING_BACK, NEW, OLD, "rollback requested", E.FAILED),
    ],
)
def test_standing(state: S, target: str, current: str, detail: str, expected: E) -> None:
    status = Status(state, 7, target, 0, 0, ResultCode.OK, detail)
    assert standing_of(status, current, NEW) is expected


def _image(tmp: Path) -> Image:
    return Image(NEW, "aa" * 32, 1000, "2.0", tmp / NEW, "http://10.0.0.1/adas-2.0.img")


def test_install_request_carries_the_delta_when_there_is_one(tmp_path: Path) -> None:
    full = install_request(EcuJob("ADAS-01", new=_image(tmp_path)))
    assert (full.target, full.sha256, full.length, full.delta) == (NEW, b"\xaa" * 32, 1000, None)
    delta = DeltaImage("d.delta", "bb" * 32, 120, "cc" * 32, tmp_path / "d", "http://x/d.delta")
    request = install_request(EcuJob("ADAS-01", new=_image(tmp_path), delta=delta))
    assert request.delta is not None
    assert (request.delta.url, request.delta.length) == ("http://x/d.delta", 120)
    assert request.delta.source_sha256 == b"\xcc" * 32
    assert request.encode()  # a valid wire payload


def test_failure_is_the_result_code_name_and_one_line_detail() -> None:
    line = failure(ResultCode.VERIFICATION_FAILED, "metadata rejected:\n  bad signature")
    assert line == "VERIFICATION_FAILED: metadata rejected: bad signature"
    assert failure(ResultCode.CANCELLED, "") == "CANCELLED"
    assert failure(99, "?") == "result code 99: ?"
