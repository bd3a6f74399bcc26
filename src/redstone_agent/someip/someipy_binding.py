"""The default :class:`Stack`: someipy 2.1.2 talking to the node's ``someipyd``.

Methods go over UDP (one datagram up to ``MAX_PAYLOAD``), events over UDP.
The control and status services are separate because someipyd 2.1.2 crashes
on a service with both methods and events. someipy's own per-call timeout is
10 s; ours wraps every call with the caller's deadline.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redstone_agent.someip.binding import (
    RETURN_NOT_OK,
    RETURN_OK,
    ClientBinding,
    EventHandler,
    MethodHandler,
    Reply,
    ServerBinding,
    Stack,
    error_for_reply,
)
from redstone_agent.someip.errors import (
    CallTimeout,
    ServiceUnavailable,
    SomeIpError,
)
from redstone_agent.someip.interface import (
    ANY_MINOR_VERSION,
    CONTROL_SERVICE_ID,
    INTERFACE_MAJOR,
    OFFER_PERIOD_MS,
    SD_MINOR_VERSION,
    SD_TTL_S,
    STATUS_EVENTGROUP_ID,
    STATUS_SERVICE_ID,
    SUBSCRIPTION_TTL_S,
    EventId,
    MethodId,
)
from redstone_agent.someip.someipy_hotpath import install as install_hotpath

log = logging.getLogger(__name__)


_SOMEIPY_LOGGERS = (
    "someipyd_client",
    "client_service_instance",
    "server_service_instance",
    "tcp_connection",
)


class _Propagate(logging.StreamHandler):  # type: ignore[type-arg]
    """Occupies someipy's "has a console handler" check; records reach ours via the root."""

    def emit(self, record: logging.LogRecord) -> None:
        return


def _someipy() -> Any:
    """Import someipy lazily and tame its logging.

    someipy defaults to DEBUG (every payload, base64) and attaches its own
    stdout handler to each logger; we raise the level to WARNING and give its
    loggers a silent handler so its records go only through the application's
    handlers (text or JSON). Its per-message hot paths are patched
    (``someipy_hotpath``).
    """
    import someipy
    from someipy.someipy_logging import set_someipy_log_level

    install_hotpath()
    set_someipy_log_level(logging.WARNING)
    for name in _SOMEIPY_LOGGERS:
        logger = logging.getLogger(f"someipy.{name}")
        if not any(isinstance(h, _Propagate) for h in logger.handlers):
            logger.handlers = [_Propagate()]
    return someipy


def _services(handler: MethodHandler | None) -> tuple[Any, Any, Any]:
    """Build (control service, status service, status eventgroup) for someipy.

    A Sub (``handler`` given) offers minor version :data:`SD_MINOR_VERSION`; a
    Master looks for any minor: someipy matches minor versions exactly, and the
    real one travels in GetInfo (docs/someip.md §1).
    """
    sp = _someipy()
    udp = sp.TransportLayerProtocol.UDP
    minor = SD_MINOR_VERSION if handler is not None else ANY_MINOR_VERSION
    control = (
        sp.ServiceBuilder()
        .with_service_id(CONTROL_SERVICE_ID)
        .with_major_version(INTERFACE_MAJOR)
        .with_minor_version(minor)
    )
    for method in MethodId:
        control.with_method(sp.Method(int(method), udp, _adapt(method, handler)))
    group = sp.EventGroup(STATUS_EVENTGROUP_ID, [sp.Event(int(e), udp) for e in EventId])
    status = (
        sp.ServiceBuilder()
        .with_service_id(STATUS_SERVICE_ID)
        .with_major_version(INTERFACE_MAJOR)
        .with_minor_version(minor)
        .with_eventgroup(group)
        .build()
    )
    return control.build(), status, group


def _adapt(method: MethodId, handler: MethodHandler | None) -> Any:
    """Wrap our handler into someipy's ``(payload, addr) -> MethodResult`` shape."""
    if handler is None:
        return None
    sp = _someipy()

    async def call(payload: bytes, _addr: tuple[str, int]) -> Any:
        try:
            reply = await handler(int(method), payload)
        except Exception:  # a handler bug must not kill the stack's reader task
            log.exception("method handler for %s failed", method.name)
            reply = Reply(b"", RETURN_NOT_OK)
        result = sp.MethodResult()
        result.payload = reply.payload
        result.return_code = sp.ReturnCode(reply.return_code)
        # someipy sends RESPONSE (0x80) whatever the return code; SOME/IP wants ERROR.
        result.message_type = sp.MessageType(reply.message_type)
        return result

    return call


class SomeipyStack(Stack):
    """One connection to the local someipyd (``socket_path`` from its JSON config)."""

    def __init__(self, socket_path: str) -> None:
        self._socket_path = socket_path
        self._daemon: Any = None

    async def connect(self) -> None:
        sp = _someipy()
        try:
            self._daemon = await sp.connect_to_someipy_daemon({"socket_path": self._socket_path})
        except Exception as exc:
            raise SomeIpError(f"cannot reach someipyd at {self._socket_path}: {exc}") from exc
        self._daemon._find_service = _OneFindAtATime(self._daemon._find_service)

    def _require(self) -> Any:
        if self._daemon is None:
            raise SomeIpError("SOME/IP stack used before connect()")
        return self._daemon

    def server(self, instance_id: int, address: str, port: int) -> ServerBinding:
        return _SomeipyServer(self._require(), instance_id, address, port)

    def client(self, instance_id: int, address: str, port: int) -> ClientBinding:
        return _SomeipyClient(self._require(), instance_id, address, port)

    async def wait_lost(self) -> None:
        """someipy's reader task ends when someipyd closes the socket."""
        reader = self._require()._rx_task
        if reader is not None:
            await asyncio.shield(reader)

    async def close(self) -> None:
        if self._daemon is not None:
            try:
                await self._daemon.disconnect_from_daemon()
            except (TimeoutError, OSError):
                log.warning("someipyd disconnect was not clean")
            self._daemon = None


class _SomeipyServer(ServerBinding):
    def __init__(self, daemon: Any, instance_id: int, address: str, port: int) -> None:
        self._daemon = daemon
        self._instance_id = instance_id
        self._address = address
        self._port = port
        self._control: Any = None
        self._status: Any = None

    async def offer(self, handler: MethodHandler) -> None:
        sp = _someipy()
        control, status, _group = _services(handler)
        self._control = sp.ServerServiceInstance(
            self._daemon,
            control,
            self._instance_id,
            self._address,
            self._port,
            ttl=SD_TTL_S,
            cyclic_offer_delay_ms=OFFER_PERIOD_MS,
        )
        self._status = sp.ServerServiceInstance(
            self._daemon,
            status,
            self._instance_id,
            self._address,
            self._port + 1,
            ttl=SD_TTL_S,
            cyclic_offer_delay_ms=OFFER_PERIOD_MS,
        )
        await self._control.start_offer()
        await self._status.start_offer()

    def send_event(self, event_id: int, payload: bytes) -> None:
        if self._status is not None:
            self._status.send_event(STATUS_EVENTGROUP_ID, event_id, payload)

    async def stop(self) -> None:
        for instance in (self._control, self._status):
            if instance is not None:
                await instance.stop_offer()
        self._control = self._status = None


FIND_REUSE_S = 0.5
"""How long a call reuses the endpoint someipyd last named for its service instance.

someipy asks the daemon FindService before *every* call: a second round trip
over the local socket, a fifth of a call's time (docs/someip.md §10.1). Calls
within this window of a successful find go straight to the known endpoint:
back-to-back calls (a status poll loop, a transfer) ask once per window. The
price: a Sub that sent StopOffer inside the window is noticed by the next call's
timeout rather than at once. A call that times out, or that the node answers
with ``E_UNKNOWN_SERVICE``, forgets the endpoint."""

_FindKey = tuple[int, int, int, int]


class _OneFindAtATime:
    """someipy's FindService, one at a time per someipyd connection, never abandoned,
    and a found endpoint reused for :data:`FIND_REUSE_S`.

    someipy 2.1.2 sends FindService and takes "the next" FindServiceResponse
    from one ``asyncio.Queue`` shared by every caller. A queue lets a new
    caller take an answer already meant for a woken waiter, so two calls to
    two Subs at once could swap their answers: the Master sent Sub 2's
    PutMetadata to Sub 1 (and learnt Sub 1's endpoint as Sub 2's), and Sub 2
    then refused Install with NO_METADATA. With one find outstanding at a time
    the one answer goes to the one asker; shielded, a caller that gives up
    still leaves the answer consumed, not queued for the next. An answer for
    another service or instance is dropped as "not found" (the caller retries).

    someipy's ``call_method`` calls the instance (reusing a recent answer);
    :meth:`fresh` always asks the daemon. "Not found" is never reused.
    """

    def __init__(self, find: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self._find = find
        self._clock = clock
        self._lock = asyncio.Lock()
        self._found: dict[_FindKey, tuple[float, Any]] = {}

    async def __call__(
        self, service_id: int, instance_id: int, major_version: int, minor_version: int
    ) -> Any:
        key = (service_id, instance_id, major_version, minor_version)
        known = self._found.get(key)
        if known is not None and self._clock() - known[0] < FIND_REUSE_S:
            return known[1]
        return await self.fresh(*key)

    async def fresh(
        self, service_id: int, instance_id: int, major_version: int, minor_version: int
    ) -> Any:
        key = (service_id, instance_id, major_version, minor_version)

        async def locked() -> Any:
            async with self._lock:
                return await self._find(*key)

        task = asyncio.ensure_future(locked())
        task.add_done_callback(_consume_outcome)
        found = await asyncio.shield(task)
        if found is not None and (found.service_id, found.instance_id) != (
            service_id,
            instance_id,
        ):
            log.warning(
                "someipyd answered FindService 0x%04x/%d with 0x%04x/%d: ignored",
                service_id,
                instance_id,
                found.service_id,
                found.instance_id,
            )
            found = None
        if found is None:
            self._found.pop(key, None)
        else:
            self._found[key] = (self._clock(), found)
        return found

    def forget(self, service_id: int, instance_id: int) -> None:
        """The instance did not answer as found: ask the daemon on the next call."""
        for key in [k for k in self._found if k[:2] == (service_id, instance_id)]:
            del self._found[key]


def _consume_outcome(task: asyncio.Future[Any]) -> None:
    """Retrieve an abandoned call's outcome so asyncio does not warn about it."""
    if not task.cancelled():
        task.exception()


@functools.cache
def _status_client_class() -> Any:
    """someipy's client instance, but events are accepted only from *its* Sub.

    someipy 2.1.2 hands every event of a service id to every client instance
    of that service, whatever instance sent it: with two Subs, Sub 1's READY
    would reach the Master's handle on Sub 2. We take the endpoint SD announced
    for our instance's control service (status = its port + 1, by the interface
    definition) and drop events from anywhere else.
    """
    sp = _someipy()

    class StatusClient(sp.ClientServiceInstance):  # type: ignore[misc,name-defined]
        source: tuple[str, int] | None = None

        def _event_data_received(self, message: Any) -> None:
            sender = (message["src_endpoint_ip"], message["src_endpoint_port"])
            if sender == self.source:
                super()._event_data_received(message)

        def expect_from(self, control_endpoint: tuple[Any, int]) -> None:
            """The status service listens on the control port + 1 (docs/someip.md §1)."""
            self.source = (str(control_endpoint[0]), int(control_endpoint[1]) + 1)

    return StatusClient


@dataclass(frozen=True)
class _Answer:
    """What came back for a call: the header's return code (any byte) and the payload."""

    return_code: int
    payload: bytes


@functools.cache
def _control_client_class() -> Any:
    """someipy's client instance, but an answer with any return code is delivered.

    someipy 2.1.2 converts the return code with its ``ReturnCode`` enum, which
    knows only 0x00-0x0A: an answer with a service-specific code (0x20-0x5E,
    allowed by SOME/IP) raised inside its reader task and ended it, cutting the
    whole process off its someipyd. It also resolved the call's future without
    checking it was still waiting. We keep the code as an int and resolve once.
    """
    sp = _someipy()
    from someipy.client_service_instance import MethodCall

    class ControlClient(sp.ClientServiceInstance):  # type: ignore[misc,name-defined]
        def _method_call_data_received(self, message: Any) -> None:
            key = MethodCall(
                service_id=message["service_id"],
                method_id=message["method_id"],
                client_id=message["client_id"],
                session_id=message["session_id"],
            )
            future = self._method_call_futures.get(key)
            if future is None or future.done() or message["client_id"] != self._client_id:
                return
            try:
                payload = base64.b64decode(message["payload"], validate=True)
            except (binascii.Error, TypeError):
                log.warning("dropped an answer with an undecodable payload from someipyd")
                return
            future.set_result(_Answer(int(message["return_code"]), payload))

    return ControlClient


class _SomeipyClient(ClientBinding):
    def __init__(self, daemon: Any, instance_id: int, address: str, port: int) -> None:
        control, status, self._group = _services(None)
        # client_id = instance id keeps concurrent calls to different Subs apart.
        self._control = _control_client_class()(
            daemon, control, instance_id, address, port, client_id=instance_id
        )
        self._status = _status_client_class()(
            daemon, status, instance_id, address, port + 1, client_id=instance_id
        )
        self._instance_id = instance_id
        self._subscribed = False

    async def call(self, method_id: int, payload: bytes, timeout: float) -> bytes:
        if self._status.source is None:
            await self.available()  # learn where this instance's events come from
        # Shielded: someipy matches FindService answers to callers by queue order, so
        # cancelling a call mid-find would hand its answer (another Sub's endpoint!)
        # to the next caller. On our deadline we stop waiting; the call runs out alone.
        inner = asyncio.ensure_future(self._control.call_method(method_id, payload))
        inner.add_done_callback(_consume_outcome)
        try:
            result = await asyncio.wait_for(asyncio.shield(inner), timeout)
        except TimeoutError:
            self._finder().forget(CONTROL_SERVICE_ID, self._instance_id)
            raise CallTimeout(
                f"no answer from sub instance {self._instance_id} to method "
                f"0x{method_id:04x} within {timeout:g}s"
            ) from None
        except RuntimeError as exc:  # someipy: "service ... not found yet"
            raise ServiceUnavailable(
                f"sub instance {self._instance_id} is not offered on the network"
            ) from exc
        answer: _Answer = result
        if answer.return_code != RETURN_OK:
            error = error_for_reply(answer.return_code, answer.payload)
            if isinstance(error, ServiceUnavailable):
                self._finder().forget(CONTROL_SERVICE_ID, self._instance_id)
            raise error
        return answer.payload

    def _finder(self) -> _OneFindAtATime:
        finder: _OneFindAtATime = self._control._daemon._find_service
        return finder

    async def available(self) -> bool:
        control = self._control
        found = await self._finder().fresh(
            control.service.id,
            self._instance_id,
            control.service.major_version,
            control.service.minor_version,
        )
        if found is None:
            return False
        self._status.expect_from(found.endpoint)
        return True

    def subscribe(self, handler: EventHandler) -> None:
        self._status.register_callback(handler)
        if not self._subscribed:
            self._status.subscribe_eventgroup(self._group, SUBSCRIPTION_TTL_S)
            self._subscribed = True

    async def stop(self) -> None:
        if self._subscribed:
            self._status.unsubscribe_eventgroup(self._group)
            self._subscribed = False
