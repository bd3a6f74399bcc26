"""Errors of the Sub daemon; each carries the wire result code the Master sees."""

from redstone_agent.errors import RedstoneError
from redstone_agent.someip.interface import MAX_TEXT, ResultCode


def wire_text(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` as a detail the wire and the journal can always carry.

    One line, UTF-8-encodable (a lone surrogate quoted from hostile input is
    escaped) and at most ``limit`` bytes, so encoding a Response or a Status
    can never fail on it.
    """
    raw = " ".join(text.split()).encode("utf-8", "backslashreplace")
    if len(raw) <= limit:
        return raw.decode("utf-8")
    return raw[: limit - 3].decode("utf-8", "ignore") + "…"


class SubError(RedstoneError):
    """A refused or failed Sub operation."""

    code = ResultCode.INTERNAL

    def __init__(self, message: str, code: ResultCode | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class WrongState(SubError):
    code = ResultCode.WRONG_STATE


class VerificationFailed(SubError):
    code = ResultCode.VERIFICATION_FAILED


class NoMetadata(SubError):
    code = ResultCode.NO_METADATA
