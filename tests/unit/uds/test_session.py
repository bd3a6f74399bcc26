"""UdsSession: byte-exact requests, 0x21 repeat, NRC/timeout/malformed translation.

The ECU side is a scripted responder on udsoncan's in-memory QueueConnection.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from udsoncan.connections import QueueConnection

from redstone_agent.uds.config import EcuConfig, Region, Timing
from redstone_agent.uds.errors import NegativeResponseError, TransportError, UdsError
from redstone_agent.uds.sequence import read_raw
from redstone_agent.uds.session import UdsSession

ECU = EcuConfig(
    "bcm",
    "docan",
    [Region("app", 0, 16)],
    timing=Timing(p2=0.2, p2_star=0.5, max_pending=2.0, busy_delay=0.0, busy_retries=2),
)


@dataclasses.dataclass
class ScriptedLink:
    """A link whose ECU answers each request with the next scripted responses."""

    script: list[list[bytes]]
    connection: QueueConnection = dataclasses.field(default_factory=QueueConnection)
    requests: list[bytes] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        self.connection.open()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        for answers in self.script:
            request = self.connection.touserqueue.get(timeout=5)
            self.requests.append(bytes(request))
            for answer in answers:
                self.connection.fromuserqueue.put(answer)

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
def session() -> Iterator[Any]:
    made: list[UdsSession] = []

    def make(*script: list[bytes]) -> tuple[UdsSession, ScriptedLink]:
        link = ScriptedLink(list(script))
        made.append(UdsSession(ECU, link))
        return made[-1], link

    yield make
    for item in made:
        item.close()


def test_read_version_request_bytes_and_value(session: Any) -> None:
    uds, link = session([bytes.fromhex("62 F1 89 32 2E 30")])
    assert uds.call("read version", lambda c: read_raw(c, 0xF189)) == b"2.0"
    assert link.requests == [bytes.fromhex("22 F1 89")]


def test_busy_repeat_is_retried(session: Any) -> None:
    uds, link = session([bytes.fromhex("7F 22 21")], [bytes.fromhex("62 F1 89 31")])
    assert uds.call("read version", lambda c: read_raw(c, 0xF189)) == b"1"
    assert link.requests == [bytes.fromhex("22 F1 89")] * 2


def test_pending_then_answer_within_p2_star(session: Any) -> None:
    uds, _link = session([bytes.fromhex("7F 31 78"), bytes.fromhex("71 01 FF 00 00")])
    response = uds.call("erase", lambda c: c.start_routine(0xFF00))
    assert response.service_data.routine_status_record == b"\x00"


def test_busy_forever_becomes_a_negative_response_error(session: Any) -> None:
    uds, _link = session(*[[bytes.fromhex("7F 22 21")]] * 3)
    with pytest.raises(NegativeResponseError, match="NRC 0x21 busyRepeatRequest"):
        uds.call("read version", lambda c: read_raw(c, 0xF189))


def test_nrc_is_named(session: Any) -> None:
    uds, _link = session([bytes.fromhex("7F 31 22")])
    with pytest.raises(NegativeResponseError) as exc:
        uds.call("erase", lambda c: c.start_routine(0xFF00))
    assert str(exc.value) == "ECU bcm: erase refused with NRC 0x22 conditionsNotCorrect"
    assert exc.value.code == 0x22


def test_silence_is_a_timeout(session: Any) -> None:
    uds, _link = session([])
    with pytest.raises(TransportError, match="ECU bcm: erase timed out"):
        uds.call("erase", lambda c: c.start_routine(0xFF00))


def test_malformed_reply(session: Any) -> None:
    uds, _link = session([bytes.fromhex("71 01")])
    with pytest.raises(UdsError, match="malformed reply"):
        uds.call("erase", lambda c: c.start_routine(0xFF00))


def test_announced_timing_only_widens(session: Any) -> None:
    uds, _link = session()
    uds.adopt_timing(0.05, 8.0)
    assert (uds.client.config["p2_timeout"], uds.client.config["p2_star_timeout"]) == (0.2, 8.0)
