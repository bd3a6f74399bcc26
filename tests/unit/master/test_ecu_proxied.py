"""ProxiedPort (master/ecu_proxied.py) against a scripted Sub behind a fake SOME/IP binding.

The fake speaks the real payloads (``someip.messages``) and answers the way
a 1.1 Sub does — or a 1.0 Sub, which lacks the methods — so the port's
decisions are checked without sockets: the one-line refusal of a Sub that
cannot flash the ECU, convergence after a lost answer or a Master restart,
and where the ECU stands.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from redstone_agent.master.ecu_proxied import ProxiedPort, install_request, standing_of
from redstone_agent.master.errors import EcuFailed
from redstone_agent.master.ports import EcuJob, EcuStanding, Image
from redstone_agent.master.topology import EcuKind, EcuSpec, TimeoutSettings
from redstone_agent.someip.binding import (
    RETURN_UNKNOWN_METHOD,
    ClientBinding,
    EventHandler,
    error_for_reply,
)
from redstone_agent.someip.client import SubClient
from redstone_agent.someip.codec import Writer
from redstone_agent.someip.errors import CallTimeout
from redstone_agent.someip.interface import EventId, MethodId, ProxiedState, ResultCode, SubState
from redstone_agent.someip.messages import (
    Blob,
    Info,
    ProxiedSerial,
    ProxiedStatus,
    ProxiedStatusRequest,
    ProxyInstallRequest,
    Response,
    Status,
)

P = ProxiedState
SERIAL = "ECU-SEAT-0001"
SUB = "ECU-BODY-0001"
TIMEOUTS = TimeoutSettings(install_s=10.0, activate_s=10.0, rollback_s=10.0)


def _image(version: str) -> Image:
    data = version.encode()
    return Image(
        f"seat-{version}",
        hashlib.sha256(data).hexdigest(),
        len(data),
        version,
        Path("/cache") / version,
        f"http://cache/{version}",
        int(version[0]),
    )


JOB = EcuJob(
    SERIAL,
    new=_image("2.0"),
    previous=_image("1.0"),
    bundle=b"{bundle}",
    bundle_url="http://cache/metadata/b",
)


@dataclass
class FakeSub(ClientBinding):
    """A Sub with one UDS ECU behind it; ``minor`` 0 is a 1.0 Sub (no proxied methods)."""

    minor: int = 1
    proxied: tuple[str, ...] = (SERIAL,)
    state: ProxiedState = P.IDLE
    version: str = "1.0"
    target: str = ""
    seq: int = 1
    fail_flash: bool = False
    lose_next_answer: bool = False
    calls: list[str] = field(default_factory=list)
    handler: EventHandler | None = None

    def status(self) -> ProxiedStatus:
        error = ResultCode.INSTALL_FAILED if self.state is P.FAILED else ResultCode.OK
        detail = "flashing 2.0 failed: NRC 0x72; it still runs 1.0" if error else ""
        return ProxiedStatus(
            SERIAL, self.state, self.seq, self.target, "", self.version, 0, 0, error, detail
        )

    def move(self, state: ProxiedState, **changes: str) -> None:
        self.state, self.seq = state, self.seq + 1
        for name, value in changes.items():
            setattr(self, name, value)
        if self.handler is not None:
            self.handler(EventId.PROXIED_STATUS, self.status().encode())

    async def _flash(self, target: str, version: str) -> None:
        await asyncio.sleep(0)
        self.move(P.FLASHING)
        await asyncio.sleep(0)
        if self.fail_flash:
            self.move(P.FAILED)
        else:
            end = P.INSTALLED if target == JOB.new.target else P.ROLLED_BACK
            self.move(end, version=version)

    async def call(self, method_id: int, payload: bytes, timeout: float) -> bytes:
        method = MethodId(method_id)
        self.calls.append(method.name)
        if method is MethodId.GET_INFO:
            return Response(ResultCode.OK, body=self._info()).encode()
        if self.minor < 1 and method_id >= MethodId.GET_PROXIED_STATUS:
            raise error_for_reply(RETURN_UNKNOWN_METHOD, b"")  # what someipyd answers
        body = b""
        if method is MethodId.GET_PROXIED_STATUS:
            assert ProxiedStatusRequest.decode(payload).serial == SERIAL
            body = self.status().encode()
        elif method is MethodId.PROXY_MANIFEST:
            body = Blob(b'{"signed": {}, "signatures": []}').encode()
        elif method is MethodId.PROXY_INSTALL:
            request = ProxyInstallRequest.decode(payload)
            if self.state not in (P.IDLE, P.INSTALLED, P.ROLLED_BACK, P.FAILED):
                return Response(ResultCode.WRONG_STATE, "busy").encode()
            self.move(P.DOWNLOADING, target=request.image.target)
            asyncio.get_running_loop().create_task(
                self._flash(request.image.target, request.image.version)
            )
        elif method is MethodId.PROXY_ROLLBACK:
            assert ProxiedSerial.decode(payload).serial == SERIAL
            self.move(P.ROLLING_BACK, target=JOB.previous.target if JOB.previous else "")
            asyncio.get_running_loop().create_task(self._flash("back", "1.0"))
        else:
            raise AssertionError(f"unexpected {method.name}")
        if self.lose_next_answer:
            self.lose_next_answer = False
            raise CallTimeout("answer lost")
        return Response(ResultCode.OK, body=body).encode()

    def _info(self) -> bytes:
        info = Info(SUB, "body-hw", "A", SubState.IDLE, "body-1", "", self.minor, self.proxied)
        if self.minor == 0:  # a 1.0 Sub's payload ends after its six fields
            return (
                Writer()
                .text(SUB)
                .text("body-hw")
                .text("A")
                .u8(SubState.IDLE)
                .text("body-1")
                .text("")
                .done()
            )
        return info.encode()

    async def available(self) -> bool:
        return True

    def subscribe(self, handler: EventHandler) -> None:
        self.handler = handler

    async def stop(self) -> None:
        return


def port_on(sub: FakeSub) -> ProxiedPort:
    spec = EcuSpec(SERIAL, EcuKind.UDS_DOCAN, "seat-hw", behind=SUB)
    return ProxiedPort(spec, SubClient(sub, SUB, timeout=1.0), TIMEOUTS)


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


Operation = Callable[[ProxiedPort], object]
OPERATIONS: dict[str, Operation] = {
    "manifest": lambda p: p.manifest("nonce"),
    "standing": lambda p: p.standing(JOB),
    "install": lambda p: p.install(JOB, lambda _d, _t: None),
    "rollback": lambda p: p.rollback(JOB),
}


@pytest.mark.parametrize("operation", OPERATIONS)
def test_a_1_0_sub_is_refused_in_one_line_before_any_proxied_call(operation: str) -> None:
    sub = FakeSub(minor=0)
    with pytest.raises(EcuFailed) as caught:
        run(OPERATIONS[operation](port_on(sub)))
    message = str(caught.value)
    assert message == (
        f"{SERIAL}: behind Sub {SUB}, which speaks SOME/IP interface 1.0 and cannot flash "
        "UDS ECUs for the Master (needs 1.1): topology refused"
    )
    assert sub.calls == ["GET_INFO"]


@pytest.mark.parametrize("operation", OPERATIONS)
def test_a_sub_that_does_not_flash_the_serial_is_refused_in_one_line(operation: str) -> None:
    sub = FakeSub(proxied=("ECU-OTHER-0001",))
    with pytest.raises(EcuFailed) as caught:
        run(OPERATIONS[operation](port_on(sub)))
    assert str(caught.value) == (
        f"{SERIAL}: Sub {SUB} does not flash this ECU "
        "(its [[sub.uds-ecus]]: ECU-OTHER-0001): topology refused"
    )
    assert sub.calls == ["GET_INFO"]


def test_install_then_rollback() -> None:
    sub = FakeSub()

    async def scenario() -> None:
        port = port_on(sub)
        assert await port.standing(JOB) is EcuStanding.OLD
        result = await port.install(JOB, lambda _d, _t: None)
        assert result.bytes_sent == JOB.new.length
        assert await port.standing(JOB) is EcuStanding.NEW
        assert (await port.activate(JOB)).detail == (await port.commit(JOB)).detail == "runs 2.0"
        assert (await port.rollback(JOB)).detail == "runs 1.0"
        assert await port.standing(JOB) is EcuStanding.OLD

    run(scenario())
    assert sub.calls.count("PROXY_INSTALL") == sub.calls.count("PROXY_ROLLBACK") == 1


def test_a_lost_answer_to_proxy_install_is_not_sent_twice() -> None:
    sub = FakeSub(lose_next_answer=True)
    run(port_on(sub).install(JOB, lambda _d, _t: None))
    assert (sub.state, sub.calls.count("PROXY_INSTALL")) == (P.INSTALLED, 1)


def test_a_restarted_master_waits_for_the_flash_under_way() -> None:
    sub = FakeSub(state=P.FLASHING, target=JOB.new.target)

    async def scenario() -> None:
        task = asyncio.create_task(port_on(sub).install(JOB, lambda _d, _t: None))
        await asyncio.sleep(0.01)
        sub.move(P.INSTALLED, version="2.0")
        await task

    run(scenario())
    assert "PROXY_INSTALL" not in sub.calls


def test_an_ecu_on_the_new_image_is_not_flashed_again() -> None:
    sub = FakeSub(state=P.INSTALLED, version="2.0", target=JOB.new.target)
    result = run(port_on(sub).install(JOB, lambda _d, _t: None))
    assert "already runs 2.0" in str(result)
    assert "PROXY_INSTALL" not in sub.calls


def test_a_failed_flash_is_one_line_with_the_subs_words() -> None:
    sub = FakeSub(fail_flash=True)
    with pytest.raises(EcuFailed) as caught:
        run(port_on(sub).install(JOB, lambda _d, _t: None))
    assert str(caught.value) == (
        f"{SERIAL}: INSTALL_FAILED: flashing 2.0 failed: NRC 0x72; it still runs 1.0"
    )


def test_rollback_of_an_ecu_on_its_old_image_sends_nothing() -> None:
    sub = FakeSub(state=P.FAILED, version="1.0", target=JOB.new.target)
    assert "runs 1.0" in str(run(port_on(sub).rollback(JOB)))
    assert "PROXY_ROLLBACK" not in sub.calls


def test_the_install_request_carries_the_bundle_and_both_images() -> None:
    request = install_request(SERIAL, JOB)
    assert request.metadata.url == JOB.bundle_url
    assert request.metadata.sha256 == hashlib.sha256(JOB.bundle).digest()
    assert (request.image.target, request.image.version, request.image.release_counter) == (
        "seat-2.0",
        "2.0",
        2,
    )
    assert request.previous is not None and request.previous.target == "seat-1.0"
    assert ProxyInstallRequest.decode(request.encode()) == request
    with pytest.raises(EcuFailed, match="no metadata bundle"):
        install_request(SERIAL, replace(JOB, bundle_url=""))


def _status(state: ProxiedState, version: str, target: str = "") -> ProxiedStatus:
    return ProxiedStatus(SERIAL, state, 1, target, "", version, 0, 0, ResultCode.OK, "")


@pytest.mark.parametrize(
    ("status", "job", "standing"),
    [
        (_status(P.DOWNLOADING, "1.0", "seat-2.0"), JOB, EcuStanding.INSTALLING),
        (_status(P.FLASHING, "", "seat-2.0"), JOB, EcuStanding.INSTALLING),
        (_status(P.DOWNLOADING, "1.0", "seat-9.0"), JOB, EcuStanding.OLD),
        (_status(P.FLASHING, "1.0", "seat-9.0"), JOB, EcuStanding.FAILED),
        (_status(P.ROLLING_BACK, "2.0"), JOB, EcuStanding.FAILED),
        (_status(P.INSTALLED, "2.0"), JOB, EcuStanding.NEW),
        (_status(P.FAILED, "1.0"), JOB, EcuStanding.OLD),
        (_status(P.FAILED, ""), JOB, EcuStanding.FAILED),
        (_status(P.IDLE, "0.5"), JOB, EcuStanding.FAILED),
        (_status(P.IDLE, "0.5"), replace(JOB, previous=None), EcuStanding.OLD),
    ],
)
def test_standing(status: ProxiedStatus, job: EcuJob, standing: EcuStanding) -> None:
    assert standing_of(status, job) is standing


def test_status_events_of_other_sub_methods_still_decode() -> None:
    """The Sub's own STATUS event and GetStatus are unchanged by 1.1 (compatibility)."""
    status = Status(SubState.READY, 3, "body-2", 1, 2, ResultCode.OK, "")
    sub = FakeSub()
    client = SubClient(sub, SUB)
    seen: list[Status] = []
    client.on_status(seen.append)
    assert sub.handler is not None
    sub.handler(EventId.STATUS, status.encode())
    assert seen == [status]
