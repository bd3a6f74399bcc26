"""UDS (ISO 14229) flashing of legacy ECUs over DoCAN (ISO-TP) and DoIP.

The Master calls ``uds.flasher.Flasher`` with an :class:`EcuConfig` loaded from
``/etc/redstone/ecus/*.toml``; docs/uds.md specifies the sequence and formats.
The package itself imports no transport: udsoncan, python-can and can-isotp
load with ``uds.flasher`` (or ``uds.link``), on a node that flashes an ECU.
"""

from redstone_agent.uds.config import EcuConfig, find_ecu, load_ecu
from redstone_agent.uds.errors import (
    FlashCancelledError,
    ImageError,
    NegativeResponseError,
    SecurityAccessError,
    TransportError,
    UdsError,
    UnknownEcuError,
    VerificationError,
)
from redstone_agent.uds.rollback import Outcome

__all__ = [
    "EcuConfig",
    "FlashCancelledError",
    "ImageError",
    "NegativeResponseError",
    "Outcome",
    "SecurityAccessError",
    "TransportError",
    "UdsError",
    "UnknownEcuError",
    "VerificationError",
    "find_ecu",
    "load_ecu",
]
