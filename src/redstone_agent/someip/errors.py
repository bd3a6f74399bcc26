"""Errors of the SOME/IP layer, all one-line :class:`RedstoneError` subclasses."""

from redstone_agent.errors import RedstoneError


class SomeIpError(RedstoneError):
    """Base class of everything the SOME/IP layer raises."""


class MalformedPayload(SomeIpError):
    """A payload does not decode under the interface definition (never trusted further)."""


class CallTimeout(SomeIpError):
    """A method call got no answer within its deadline."""


class ServiceUnavailable(SomeIpError):
    """The Sub's service instance is not (or no longer) offered on the network."""


class RemoteError(SomeIpError):
    """The Sub answered with a non-OK result code."""

    def __init__(self, code: int, detail: str) -> None:
        from redstone_agent.someip.interface import ResultCode

        try:
            name = ResultCode(code).name
        except ValueError:
            name = f"code {code}"
        super().__init__(f"sub refused: {name}: {detail}" if detail else f"sub refused: {name}")
        self.code = code
        self.detail = detail


class MalformedDatagram(SomeIpError):
    """A UDP datagram is not a sequence of whole SOME/IP messages (dropped as a whole)."""
