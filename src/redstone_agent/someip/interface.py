"""Identifiers, enums and limits of the Redstone Sub OTA service (docs/someip.md).

This module and ``messages`` are the only code definition of the interface:
the Sub, the Master-side client and every binding import the numbers from
here so the wire contract cannot drift between them.
"""

from __future__ import annotations

from enum import IntEnum

INTERFACE_MAJOR = 1
"""SOME/IP major interface version: bumped on any incompatible payload change."""
INTERFACE_MINOR = 0
"""Minor version: bumped when fields are appended (old receivers ignore them)."""

CONTROL_SERVICE_ID = 0x5244
"""Methods. Events live in a second service: someipy 2.1.2's daemon crashes on a
service that has methods and events (``Method`` lacks ``__hash__``)."""
STATUS_SERVICE_ID = 0x5245
STATUS_EVENTGROUP_ID = 0x0001

SD_TTL_S = 3
"""Offer TTL: a Sub that vanished is forgotten after this many seconds."""
OFFER_PERIOD_MS = 1000
SUBSCRIPTION_TTL_S = 5
STATUS_HEARTBEAT_S = 2.0
"""A Sub repeats its STATUS event this often even without a change."""

MAX_PAYLOAD = 60_000
"""Method payloads travel as single UDP datagrams: keep them under 64 KiB."""
MAX_TEXT = 1024
"""Longest string field in bytes (URLs, target names, error details)."""
MAX_NONCE = 64
MAX_BUNDLE = 16 * 1024 * 1024
"""Largest metadata bundle PutMetadataFrom accepts (matches the uptane bundle cap)."""
SHA256_LEN = 32


class MethodId(IntEnum):
    """Methods of the control service (request/response over UDP)."""

    GET_INFO = 0x0001
    GET_STATUS = 0x0002
    GET_MANIFEST = 0x0003
    PUT_METADATA = 0x0004
    INSTALL = 0x0005
    ACTIVATE = 0x0006
    COMMIT = 0x0007
    ROLLBACK = 0x0008
    CANCEL = 0x0009
    PUT_METADATA_FROM = 0x000A
    """PutMetadata for bundles over MAX_PAYLOAD: the Sub fetches them from the cache."""


class EventId(IntEnum):
    """Events of the status service, all in :data:`STATUS_EVENTGROUP_ID`."""

    STATUS = 0x8001
    PROGRESS = 0x8002


class SubState(IntEnum):
    """The Sub's update state, after the AUTOSAR UCM package states."""

    IDLE = 0
    TRANSFERRING = 1
    PROCESSING = 2
    READY = 3
    ACTIVATING = 4
    VERIFYING = 5
    COMMITTED = 6
    ROLLING_BACK = 7
    ROLLED_BACK = 8
    FAILED = 9


class ResultCode(IntEnum):
    """First byte of every method response; also the ``error`` of a status."""

    OK = 0
    MALFORMED = 1
    WRONG_STATE = 2
    VERIFICATION_FAILED = 3
    NO_METADATA = 4
    TRANSFER_FAILED = 5
    INSTALL_FAILED = 6
    HEALTH_CHECK_FAILED = 7
    CANCELLED = 8
    BOOT_FALLBACK = 9
    INTERNAL = 10
    UNKNOWN_METHOD = 11
    """Method id not in this interface version (SOME/IP E_UNKNOWN_METHOD in the header)."""
    WRONG_INTERFACE_VERSION = 12
    """The request's interface (major) version is not the Sub's (E_WRONG_INTERFACE_VERSION)."""
