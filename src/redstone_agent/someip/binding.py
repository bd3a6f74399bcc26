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

RETURN_OK = 0x00
RETURN_NOT_OK = 0x01
RETURN_MALFORMED = 0x09
"""SOME/IP header return codes a handler may answer with (E_OK, E_NOT_OK, E_MALFORMED_MESSAGE)."""


@dataclass(frozen=True)
class Reply:
    """What a method handler answers: SOME/IP return code and payload."""

    payload: bytes
    return_code: int = RETURN_OK


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
        """Call a method; raise ``CallTimeout``, ``ServiceUnavailable`` or ``MalformedPayload``."""

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
