"""UDS (ISO 14229) flashing of legacy ECUs over DoCAN (ISO-TP) and DoIP.

The Master calls :class:`Flasher` with an :class:`EcuConfig` loaded from
``/etc/redstone/ecus/*.toml``; docs/uds.md specifies the sequence and formats.
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
from redstone_agent.uds.flasher import Flasher, FlashImage, FlashReport, Progress
from redstone_agent.uds.rollback import Outcome

__all__ = [
    "EcuConfig",
    "FlashCancelledError",
    "FlashImage",
    "FlashReport",
    "Flasher",
    "ImageError",
    "NegativeResponseError",
    "Outcome",
    "Progress",
    "SecurityAccessError",
    "TransportError",
    "UdsError",
    "UnknownEcuError",
    "VerificationError",
    "find_ecu",
    "load_ecu",
]
