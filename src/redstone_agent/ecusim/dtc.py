"""Fault memory model: stored DTCs with status bytes, matched by mask, cleared by group.

Like ``flash.py`` for the flash, this knows nothing about requests or NRCs;
``ecu.py`` parses ReadDTCInformation (0x19) and ClearDiagnosticInformation
(0x14) and answers from here. The memory is non-volatile: resets and power
loss keep it.
"""

from __future__ import annotations

from redstone_agent.ecusim.config import SimDiagnostics
from redstone_agent.uds.diagnostics import (
    ALL_DTCS,
    CONFIRMED_DTC,
    PENDING_DTC,
    TEST_FAILED,
    TEST_FAILED_SINCE_LAST_CLEAR,
    TEST_FAILED_THIS_OPERATION_CYCLE,
)

ACTIVE_STATUS = (
    TEST_FAILED
    | TEST_FAILED_THIS_OPERATION_CYCLE
    | PENDING_DTC
    | CONFIRMED_DTC
    | TEST_FAILED_SINCE_LAST_CLEAR
)
"""0x2F: what a DTC set by a failing test right now looks like."""


class FaultMemory:
    """DTC code → status byte; a status of 0 means "supported, nothing recorded"."""

    def __init__(self, settings: SimDiagnostics, known: list[int] | None = None) -> None:
        self.availability = settings.availability_mask
        self.status: dict[int, int] = dict.fromkeys(known or [], 0)
        """Every DTC the ECU supports (``known``: e.g. the ones a flash may set)."""
        for dtc in settings.dtcs:
            self.status[dtc.code] = dtc.status

    def record(self, code: int, status: int = ACTIVE_STATUS) -> None:
        """A test failed: set ``status`` bits of ``code`` (added if new)."""
        self.status[code] = self.status.get(code, 0) | status

    def reported(self, code: int) -> int:
        """The status byte as the ECU reports it: only the bits it supports."""
        return self.status[code] & self.availability

    def matching(self, mask: int) -> list[tuple[int, int]]:
        """``(code, reported status)`` of the DTCs with a bit of ``mask``, by code."""
        return [
            (code, self.reported(code))
            for code in sorted(self.status)
            if self.reported(code) & mask
        ]

    def supported(self) -> list[tuple[int, int]]:
        """Every supported DTC with its reported status (0 when cleared), by code."""
        return [(code, self.reported(code)) for code in sorted(self.status)]

    def clear(self, group: int) -> bool:
        """Clear every DTC (:data:`ALL_DTCS`) or one; False when ``group`` is no DTC of ours."""
        if group == ALL_DTCS:
            self.status = dict.fromkeys(self.status, 0)
            return True
        if group not in self.status:
            return False
        self.status[group] = 0
        return True


def encode_records(records: list[tuple[int, int]]) -> bytes:
    """DTCAndStatusRecords: 3-byte code and status byte each."""
    return b"".join(code.to_bytes(3, "big") + bytes([status]) for code, status in records)
