"""Opening a link to an ECU by its configured transport."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from udsoncan.connections import BaseConnection

from redstone_agent.uds.config import EcuConfig


class Link(Protocol):
    """An open channel to one ECU that udsoncan can talk through."""

    @property
    def connection(self) -> BaseConnection:
        """The udsoncan connection over this link."""

    def close(self) -> None:
        """Release sockets, threads and buses."""


LinkFactory = Callable[[EcuConfig], Link]


def open_link(ecu: EcuConfig) -> Link:
    """Open the ECU's DoCAN or DoIP link."""
    if ecu.transport == "docan":
        from redstone_agent.uds.docan import DoCanLink

        return DoCanLink(ecu.docan)
    from redstone_agent.uds.doip import DoIpLink

    return DoIpLink(ecu.doip)
