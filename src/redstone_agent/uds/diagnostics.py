"""Diagnostics around a campaign: software versions, DTCs, clearing them.

What the Master reads from a UDS ECU before it touches it and again after
the campaign, so the report can say what the update changed (docs/uds.md §5):

1. ReadDataByIdentifier ``22 <did>`` for each software-version DID, one DID
   per request. NRC ``0x31`` requestOutOfRange means "this ECU has no such
   DID": that DID is left out, it is not an error.
2. ReadDTCInformation reportDTCByStatusMask ``19 02 <mask>`` → ``59 02 <availability>
   (<DTC:3> <status:1>)*``: the DTCs whose status has a bit of the mask
   (default :data:`DEFAULT_STATUS_MASK`, testFailed | confirmedDTC).
3. ClearDiagnosticInformation ``14 <group:3>`` → ``54``: all DTCs
   (:data:`ALL_DTCS`) or a single one, only where policy says so.

The sync functions work on an open :class:`~redstone_agent.uds.session.Channel`
(as the flasher does, with its NRC 0x21 repeats and reconnects); every failure
is one line of the :class:`UdsError` family. :func:`read_ecu` opens its own
channel and never raises a :class:`UdsError`; :func:`read_ecu_async` and
:func:`clear_ecu_async` run the blocking work in a worker thread.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from udsoncan.client import Client

from redstone_agent.uds.config import EcuConfig
from redstone_agent.uds.errors import NegativeResponseError, UdsError
from redstone_agent.uds.link import LinkFactory, open_link
from redstone_agent.uds.session import Channel, RawCodec

log = logging.getLogger(__name__)

# -- services (ISO 14229-1 §11) ----------------------------------------------------------

CLEAR_DIAGNOSTIC_INFORMATION = 0x14
READ_DTC_INFORMATION = 0x19
REPORT_NUMBER_OF_DTC_BY_STATUS_MASK = 0x01
REPORT_DTC_BY_STATUS_MASK = 0x02
REPORT_SUPPORTED_DTC = 0x0A
DTC_FORMAT_ISO14229_1 = 0x01
"""DTCFormatIdentifier in reportNumberOfDTCByStatusMask answers."""
ALL_DTCS = 0xFFFFFF
"""groupOfDTC that clears every DTC."""
REQUEST_OUT_OF_RANGE = 0x31
"""The NRC an ECU answers for a DID (or DTC group) it does not have."""

# -- DTC status bits (ISO 14229-1 D.2) ------------------------------------------------

TEST_FAILED = 0x01
TEST_FAILED_THIS_OPERATION_CYCLE = 0x02
PENDING_DTC = 0x04
CONFIRMED_DTC = 0x08
TEST_NOT_COMPLETED_SINCE_LAST_CLEAR = 0x10
TEST_FAILED_SINCE_LAST_CLEAR = 0x20
TEST_NOT_COMPLETED_THIS_OPERATION_CYCLE = 0x40
WARNING_INDICATOR_REQUESTED = 0x80
STATUS_BIT_NAMES: dict[int, str] = {
    TEST_FAILED: "testFailed",
    TEST_FAILED_THIS_OPERATION_CYCLE: "testFailedThisOperationCycle",
    PENDING_DTC: "pendingDTC",
    CONFIRMED_DTC: "confirmedDTC",
    TEST_NOT_COMPLETED_SINCE_LAST_CLEAR: "testNotCompletedSinceLastClear",
    TEST_FAILED_SINCE_LAST_CLEAR: "testFailedSinceLastClear",
    TEST_NOT_COMPLETED_THIS_OPERATION_CYCLE: "testNotCompletedThisOperationCycle",
    WARNING_INDICATOR_REQUESTED: "warningIndicatorRequested",
}
DEFAULT_STATUS_MASK = TEST_FAILED | CONFIRMED_DTC
"""0x09: DTCs failing now or confirmed (the ``dtc-status-mask`` default)."""

# -- software identification DIDs (ISO 14229-1 C.1) ------------------------------------

VEHICLE_MANUFACTURER_SOFTWARE_VERSION = 0xF189
SYSTEM_SUPPLIER_SOFTWARE_VERSION = 0xF195
SOFTWARE_VERSION_DIDS = (VEHICLE_MANUFACTURER_SOFTWARE_VERSION, SYSTEM_SUPPLIER_SOFTWARE_VERSION)
"""Read around every campaign (besides the ECU file's own version DID)."""

_OBD_LETTERS = "PCBU"


def did_key(did: int) -> str:
    """How a DID names its value in version maps and reports: ``0xF189``."""
    return f"0x{did:04X}"


@dataclass(frozen=True, order=True)
class Dtc:
    """One diagnostic trouble code as the ECU reports it: 3-byte code and status byte."""

    code: int
    status: int

    def __post_init__(self) -> None:
        if not 0 <= self.code <= 0xFFFFFF:
            raise ValueError(f"DTC 0x{self.code:X} is not a 3-byte code")
        if not 0 <= self.status <= 0xFF:
            raise ValueError(f"DTC status 0x{self.status:X} is not one byte")

    @property
    def hex(self) -> str:
        """``0x9A0B1C``."""
        return f"0x{self.code:06X}"

    @property
    def display(self) -> str:
        """ISO 15031-6 / SAE J2012 form with the failure-type byte: 0x9A0B1C → ``B1A0B-1C``."""
        high, low, failure_type = self.code >> 16, (self.code >> 8) & 0xFF, self.code & 0xFF
        letter, digit = _OBD_LETTERS[high >> 6], (high >> 4) & 0x3
        return f"{letter}{digit}{high & 0xF:X}{low:02X}-{failure_type:02X}"

    @property
    def status_names(self) -> list[str]:
        """The set status bits by name, lowest bit first."""
        return [name for bit, name in STATUS_BIT_NAMES.items() if self.status & bit]

    def __str__(self) -> str:
        return f"{self.hex} ({self.display}) status 0x{self.status:02X}"

    def to_dict(self) -> dict[str, str]:
        """JSON form: ``{"code": "0x9A0B1C", "display": "B1A0B-1C", "status": "0x2F"}``."""
        return {"code": self.hex, "display": self.display, "status": f"0x{self.status:02X}"}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Dtc:
        """Inverse of :meth:`to_dict`; ``code`` and ``status`` may also be plain integers."""
        return cls(_integer(data["code"]), _integer(data["status"]))


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError(f"expected an integer, got {value!r}")
    return value if isinstance(value, int) else int(str(value), 0)


# -- on an open channel ------------------------------------------------------------------


def read_versions(channel: Channel, dids: Iterable[int]) -> dict[str, str]:
    """``did_key(did)`` → value for each DID the ECU has (one request each).

    Values are text with trailing NUL/0xFF padding stripped, or lowercase hex
    when they are not printable ASCII. DIDs answered with NRC 0x31 are left out.
    """
    versions: dict[str, str] = {}
    for did in dict.fromkeys(dids):
        try:
            raw = channel.call(f"read DID {did_key(did)}", functools.partial(_read_did, did=did))
        except NegativeResponseError as exc:
            if exc.code != REQUEST_OUT_OF_RANGE:
                raise
            log.debug("%s: no DID %s", channel.ecu.name, did_key(did))
            continue
        versions[did_key(did)] = _as_text(raw)
    return versions


def read_dtcs(channel: Channel, status_mask: int = DEFAULT_STATUS_MASK) -> list[Dtc]:
    """reportDTCByStatusMask: the DTCs with a status bit of ``status_mask``, sorted by code."""
    _check_mask(status_mask)
    response = channel.call(
        f"read DTCs (mask 0x{status_mask:02X})",
        lambda client: client.get_dtc_by_status_mask(status_mask),
    )
    found = {d.id: d.status.get_byte_as_int() for d in response.service_data.dtcs}
    return [Dtc(code, status) for code, status in sorted(found.items())]


def clear_dtcs(channel: Channel, group: int = ALL_DTCS) -> None:
    """ClearDiagnosticInformation of ``group``: :data:`ALL_DTCS` or one DTC's code."""
    if not 0 <= group <= ALL_DTCS:
        raise ValueError(f"DTC group 0x{group:X} is not a 3-byte value")
    what = "all DTCs" if group == ALL_DTCS else f"DTC 0x{group:06X}"
    channel.call(f"clear {what}", lambda client: client.clear_dtc(group))


def _read_did(client: Client, did: int) -> bytes:
    """ReadDataByIdentifier of any DID, decoded as raw bytes."""
    codecs = client.config["data_identifiers"]
    if did not in codecs:
        client.set_config("data_identifiers", {**codecs, did: RawCodec})
    response = client.read_data_by_identifier(did)
    return b"" if response is None else bytes(response.service_data.values[did])


def _as_text(raw: bytes) -> str:
    value = raw.rstrip(b"\x00\xff")
    if all(0x20 <= b < 0x7F for b in value):
        return value.decode("ascii")
    return value.hex()


def _check_mask(status_mask: int) -> None:
    if not 0 < status_mask <= 0xFF:
        raise ValueError(f"DTC status mask 0x{status_mask:X} must be 0x01..0xFF")


# -- opening their own channel -------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """What one ECU reported; ``error`` (one line) when part of it could not be read."""

    versions: dict[str, str] = field(default_factory=dict)
    dtcs: tuple[Dtc, ...] = ()
    error: str = ""


def read_ecu(
    ecu: EcuConfig,
    *,
    dids: Iterable[int] = SOFTWARE_VERSION_DIDS,
    status_mask: int = DEFAULT_STATUS_MASK,
    link_factory: LinkFactory = open_link,
) -> Reading:
    """Versions, then DTCs, over a fresh channel (blocking). Never raises a UdsError:
    an ECU that does not answer gives a :class:`Reading` with ``error`` set and
    whatever was read before the failure."""
    _check_mask(status_mask)
    channel = Channel(ecu, link_factory)
    versions: dict[str, str] = {}
    try:
        versions = read_versions(channel, dids)
        return Reading(versions, tuple(read_dtcs(channel, status_mask)))
    except UdsError as exc:
        log.warning("%s: diagnostics incomplete: %s", ecu.name, exc)
        line = " ".join(str(exc).split())
        named = line if line.startswith(f"ECU {ecu.name}:") else f"ECU {ecu.name}: {line}"
        return Reading(versions, (), named)
    finally:
        channel.drop()


def clear_ecu(
    ecu: EcuConfig, groups: Iterable[int] = (ALL_DTCS,), *, link_factory: LinkFactory = open_link
) -> None:
    """Clear each of ``groups`` over a fresh channel (blocking); raises a one-line UdsError."""
    channel = Channel(ecu, link_factory)
    try:
        for group in groups:
            clear_dtcs(channel, group)
    finally:
        channel.drop()


async def read_ecu_async(
    ecu: EcuConfig,
    *,
    dids: Iterable[int] = SOFTWARE_VERSION_DIDS,
    status_mask: int = DEFAULT_STATUS_MASK,
    link_factory: LinkFactory = open_link,
) -> Reading:
    """:func:`read_ecu` in a worker thread."""
    return await asyncio.to_thread(
        read_ecu, ecu, dids=tuple(dids), status_mask=status_mask, link_factory=link_factory
    )


async def clear_ecu_async(
    ecu: EcuConfig, groups: Iterable[int] = (ALL_DTCS,), *, link_factory: LinkFactory = open_link
) -> None:
    """:func:`clear_ecu` in a worker thread."""
    await asyncio.to_thread(clear_ecu, ecu, tuple(groups), link_factory=link_factory)
