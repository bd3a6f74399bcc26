"""The seam between Redstone and a SOME/IP stack.

Redstone needs little from a stack: offer one service instance with a method
handler and a way to emit events (Sub side), and call methods / receive
events of a given instance (Master side). An OEM replacing someipy (GPL-3.0)
implements these three classes; nothing else in the agent imports a stack.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redstone_agent.someip.errors import (
    MalformedPayload,
    RemoteError,
    ServiceUnavailable,
    SomeIpError,
)
from redstone_agent.someip.interface import ResultCode
from redstone_agent.someip.messages import Response

PROTOCOL_VERSION = 0x01
"""The SOME/IP protocol version of every header we send and accept."""

MESSAGE_REQUEST = 0x00
MESSAGE_REQUEST_NO_RETURN = 0x01
MESSAGE_NOTIFICATION = 0x02
MESSAGE_RESPONSE = 0x80
MESSAGE_ERROR = 0x81
"""SOME/IP message types: an answer whose return code is not E_OK is an ERROR."""

RETURN_OK = 0x00
RETURN_NOT_OK = 0x01
RETURN_UNKNOWN_SERVICE = 0x02
RETURN_UNKNOWN_METHOD = 0x03
RETURN_WRONG_PROTOCOL_VERSION = 0x07
RETURN_WRONG_INTERFACE_VERSION = 0x08
RETURN_MALFORMED = 0x09
"""SOME/IP header return codes (E_OK, E_NOT_OK, E_UNKNOWN_SERVICE, ...); docs/someip.md §5."""

RETURN_NAMES = {
    0x00: "E_OK",
    0x01: "E_NOT_OK",
    0x02: "E_UNKNOWN_SERVICE",
    0x03: "E_UNKNOWN_METHOD",
    0x04: "E_NOT_READY",
    0x05: "E_NOT_REACHABLE",
    0x06: "E_TIMEOUT",
    0x07: "E_WRONG_PROTOCOL_VERSION",
    0x08: "E_WRONG_INTERFACE_VERSION",
    0x09: "E_MALFORMED_MESSAGE",
    0x0A: "E_WRONG_MESSAGE_TYPE",
}
"""Names of the return codes SOME/IP defines; 0x20-0x5E are service-specific."""


@dataclass(frozen=True)
class Reply:
    """What a method handler answers: SOME/IP return code and payload.

    A binding sends a reply whose return code is not E_OK as message type
    ERROR (0x81), any other as RESPONSE (0x80).
    """

    payload: bytes
    return_code: int = RETURN_OK

    @property
    def message_type(self) -> int:
        return MESSAGE_RESPONSE if self.return_code == RETURN_OK else MESSAGE_ERROR


_RESULT_FOR_RETURN = {
    RETURN_UNKNOWN_METHOD: ResultCode.UNKNOWN_METHOD,
    RETURN_WRONG_INTERFACE_VERSION: ResultCode.WRONG_INTERFACE_VERSION,
}


def return_code_name(return_code: int) -> str:
    name = RETURN_NAMES.get(return_code, "service-specific error")
    return f"{name} (0x{return_code:02x})"


def error_for_reply(return_code: int, payload: bytes) -> SomeIpError:
    """The error a non-OK answer means, whichever stack sent it (docs/someip.md §4).

    A Redstone Sub puts the response envelope in its error answers; the node's
    SOME/IP daemon and other stacks send the header return code alone (empty
    or foreign payload), which maps onto the nearest result code.
    ``E_UNKNOWN_SERVICE`` comes from a node whose daemon no longer offers the
    service (the Sub process is restarting): that is "unavailable, try again",
    not a refusal.
    """
    what = f"SOME/IP {return_code_name(return_code)}"
    if return_code == RETURN_UNKNOWN_SERVICE:
        return ServiceUnavailable(f"the node answered {what}: the service is not offered there")
    try:
        response = Response.decode(payload)
    except MalformedPayload:
        response = None
    code: ResultCode
    if response is not None and response.code is not ResultCode.OK:
        code, detail = response.code, response.detail or what
    else:
        code = _RESULT_FOR_RETURN.get(return_code, ResultCode.INTERNAL)
        detail = what
    if return_code == RETURN_MALFORMED or code is ResultCode.MALFORMED:
        return MalformedPayload(f"request rejected as malformed: {detail}")
    return RemoteError(code, detail)


MethodHandler = Callable[[int, bytes], Awaitable[Reply]]
"""``handler(method_id, request_payload) -> Reply``; must not raise."""
EventHandler = Callable[[int, bytes], None]
"""``handler(event_id, payload)``; called on the event loop."""


class ServerBinding(ABC):
    """One offered instance of the control and status services."""

    @abstractmethod
    async def offer(self, handler: MethodHandler) -> None:
        """Start answering calls and announcing the instance via SD."""

    @abstractmethod
    def send_event(self, event_id: int, payload: bytes) -> None:
        """Notify every subscriber; never blocks, may drop when nobody listens."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop offering (a StopOffer tells clients immediately)."""


class ClientBinding(ABC):
    """The Master's view of one Sub instance."""

    @abstractmethod
    async def call(self, method_id: int, payload: bytes, timeout: float) -> bytes:
        """Call a method and return the payload of an E_OK answer.

        Raise ``CallTimeout``, ``ServiceUnavailable``, or for an answer with any
        other return code (RESPONSE or ERROR) the error of :func:`error_for_reply`.
        """

    @abstractmethod
    async def available(self) -> bool:
        """Whether SD currently knows an offer of this instance."""

    @abstractmethod
    def subscribe(self, handler: EventHandler) -> None:
        """Receive status events; the subscription survives Sub restarts."""

    @abstractmethod
    async def stop(self) -> None:
        """Unsubscribe and forget the instance."""


class Stack(ABC):
    """A node's connection to its SOME/IP stack (one per process)."""

    @abstractmethod
    async def connect(self) -> None:
        """Attach to the node's SOME/IP daemon or stack."""

    @abstractmethod
    def server(self, instance_id: int, address: str, port: int) -> ServerBinding:
        """The Sub side: services on ``address:port`` (control) and ``port + 1`` (status)."""

    @abstractmethod
    def client(self, instance_id: int, address: str, port: int) -> ClientBinding:
        """The Master side: responses and events arrive on ``address:port``/``port + 1``."""

    @abstractmethod
    async def wait_lost(self) -> None:
        """Return when the connection to the stack is gone (its daemon died)."""

    @abstractmethod
    async def close(self) -> None:
        """Detach; offered services disappear from the network."""
