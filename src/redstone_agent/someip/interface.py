"""Identifiers, enums and limits of the Redstone Sub OTA service (docs/someip.md).

This module and ``messages`` are the only code definition of the interface:
the Sub, the Master-side client and every binding import the numbers from
here so the wire contract cannot drift between them.
"""

from __future__ import annotations

from enum import IntEnum

INTERFACE_MAJOR = 1
"""SOME/IP major interface version: bumped on any incompatible payload change."""
INTERFACE_MINOR = 1
"""Minor version: bumped when fields or methods are added that old peers can ignore.

1.1 adds UDS ECUs behind a Sub (the ``PROXY_*`` methods, ``PROXIED_STATUS``) and
appends ``interface_minor`` and the proxied serials to GetInfo, which is how a
Master learns what a Sub can do (SD cannot tell it: see :data:`SD_MINOR_VERSION`)."""
PROXY_MINOR = 1
"""The first minor version whose Subs flash UDS ECUs on the Master's behalf."""
SD_MINOR_VERSION = 0
"""The minor version a Sub offers in SD, for ever within major 1.

someipy 2.1.2 finds a service only when the minor version matches exactly
(not "at least", as AUTOSAR's minimum-minor policy would): a Sub that offered
1 would be invisible to every 1.0 Master. New Masters look for
:data:`ANY_MINOR_VERSION` and read the real minor from GetInfo."""
ANY_MINOR_VERSION = 0xFFFF_FFFF
"""FindService wildcard: an offer of any minor version matches."""

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
MAX_PROXIED = 64
"""Most UDS ECUs one Sub flashes on the Master's behalf (GetInfo lists them)."""
MAX_PROXIED_IMAGE = 64 * 1024 * 1024
"""Largest UDS image a Sub downloads for an ECU behind it (a sanity cap, not a flash size)."""


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
    GET_PROXIED_STATUS = 0x000B
    """1.1: where a UDS ECU behind this Sub stands (``ProxiedStatus``)."""
    PROXY_MANIFEST = 0x000C
    """1.1: the signed version manifest of a UDS ECU behind this Sub."""
    PROXY_INSTALL = 0x000D
    """1.1: verify, download and flash an image into a UDS ECU behind this Sub."""
    PROXY_ROLLBACK = 0x000E
    """1.1: flash a UDS ECU behind this Sub back to what it ran before the last install."""


class EventId(IntEnum):
    """Events of the status service, all in :data:`STATUS_EVENTGROUP_ID`."""

    STATUS = 0x8001
    PROGRESS = 0x8002
    PROXIED_STATUS = 0x8003
    """1.1: a ``ProxiedStatus`` snapshot, on each change of a UDS ECU behind this Sub."""


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
    UNKNOWN_ECU = 13
    """1.1: a proxied operation names a serial this Sub does not flash. Never sent in
    answer to a 1.0 method, so a 1.0 Master never meets it."""


class ProxiedState(IntEnum):
    """1.1: what a Sub is doing with one UDS ECU behind it (docs/someip.md §5)."""

    IDLE = 0
    """Nothing done since the Sub started; the ECU runs what ``running`` names."""
    DOWNLOADING = 1
    """Verifying the metadata and fetching the image(s) from the Master's cache;
    the ECU is untouched."""
    FLASHING = 2
    """Programming, resetting and verifying the new image (never cut off halfway)."""
    INSTALLED = 3
    """The new image runs: the ECU reported its version after the reset."""
    ROLLING_BACK = 4
    """Flashing the image the ECU ran before the last install (or switching banks)."""
    ROLLED_BACK = 5
    """The ECU runs what it ran before the last install."""
    FAILED = 6
    """The last operation failed; ``error``/``detail`` say why, ``version`` what runs."""


PROXIED_SETTLED = frozenset(
    {ProxiedState.IDLE, ProxiedState.INSTALLED, ProxiedState.ROLLED_BACK, ProxiedState.FAILED}
)
"""Nothing under way for that ECU: ProxyInstall and ProxyRollback are accepted."""
