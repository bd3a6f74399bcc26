"""Errors of the Sub daemon; each carries the wire result code the Master sees."""

from redstone_agent.errors import RedstoneError
from redstone_agent.someip.interface import ResultCode


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
