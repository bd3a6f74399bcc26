"""Errors of UDS flashing; each says which ECU and what to do about it."""

from __future__ import annotations

from redstone_agent.errors import RedstoneError

NRC_NAMES: dict[int, str] = {
    0x10: "generalReject",
    0x11: "serviceNotSupported",
    0x12: "subFunctionNotSupported",
    0x13: "incorrectMessageLengthOrInvalidFormat",
    0x14: "responseTooLong",
    0x21: "busyRepeatRequest",
    0x22: "conditionsNotCorrect",
    0x24: "requestSequenceError",
    0x25: "noResponseFromSubnetComponent",
    0x26: "failurePreventsExecutionOfRequestedAction",
    0x31: "requestOutOfRange",
    0x33: "securityAccessDenied",
    0x35: "invalidKey",
    0x36: "exceededNumberOfAttempts",
    0x37: "requiredTimeDelayNotExpired",
    0x70: "uploadDownloadNotAccepted",
    0x71: "transferDataSuspended",
    0x72: "generalProgrammingFailure",
    0x73: "wrongBlockSequenceCounter",
    0x78: "requestCorrectlyReceived-ResponsePending",
    0x7E: "subFunctionNotSupportedInActiveSession",
    0x7F: "serviceNotSupportedInActiveSession",
}


def nrc_name(code: int) -> str:
    """Human name of a negative response code, e.g. ``0x33 securityAccessDenied``."""
    return f"0x{code:02X} {NRC_NAMES.get(code, 'unknown NRC')}"


class UdsError(RedstoneError):
    """Base of everything that can go wrong while talking UDS to an ECU."""


class UnknownEcuError(UdsError):
    """The campaign names an ECU no configuration file describes."""


class TransportError(UdsError):
    """The link to the ECU (CAN bus, ISO-TP, DoIP socket) failed or timed out."""


class NegativeResponseError(UdsError):
    """The ECU refused a request with a negative response code."""

    def __init__(self, ecu: str, step: str, code: int) -> None:
        super().__init__(f"ECU {ecu}: {step} refused with NRC {nrc_name(code)}")
        self.ecu = ecu
        self.step = step
        self.code = code


class SecurityAccessError(UdsError):
    """Seed/key exchange failed: wrong algorithm or secret, or the ECU locked us out."""


class ImageError(UdsError):
    """The image does not fit the ECU: too large for its region, empty, unknown region."""


class VerificationError(UdsError):
    """The ECU reports a bad checksum, failed dependency check or wrong version."""


class FlashCancelledError(UdsError):
    """The operator or the campaign cancelled the flash; the ECU stays in its bootloader."""
