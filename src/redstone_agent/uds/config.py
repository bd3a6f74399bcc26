"""Per-ECU flashing configuration: one TOML file per ECU, loaded into frozen dataclasses.

The same transport section is shared with the ECU simulator, so a tester and a
simulated ECU configured from the same addresses always match.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from redstone_agent.config import ConfigError, load
from redstone_agent.uds.errors import UnknownEcuError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DoCanSettings:
    """ISO-TP over CAN. ``tx_id`` is the tester→ECU arbitration id, ``rx_id`` the reply id."""

    interface: str = "socketcan"
    """python-can interface: ``socketcan`` in vehicles, ``virtual``/``udp_multicast`` in tests."""
    channel: str = "can0"
    bitrate: int = 500_000
    fd: bool = False
    """CAN FD frames (up to 64 data bytes) with bit-rate switch."""
    data_bitrate: int = 2_000_000
    tx_id: int = 0x7E0
    rx_id: int = 0x7E8
    extended_id: bool = False
    frame_length: int = 8
    """Data bytes per CAN frame: 8 on classic CAN, 8..64 on CAN FD."""
    padding: bool = True
    pad_byte: int = 0xCC
    block_size: int = 8
    """ISO-TP flow-control block size we announce (0 = no further flow control)."""
    st_min_ms: int = 0
    max_message: int = 0x10000
    """Largest ISO-TP message accepted; above 4095 uses the 32-bit first-frame length."""

    def __post_init__(self) -> None:
        if not 8 <= self.frame_length <= 64 or (not self.fd and self.frame_length != 8):
            raise ValueError("frame_length must be 8 on classic CAN and 8..64 on CAN FD")
        if not 0 <= self.block_size <= 255 or not 0 <= self.st_min_ms <= 127:
            raise ValueError("block_size must be 0..255 and st_min_ms 0..127")


@dataclass(frozen=True)
class DoIpSettings:
    """DoIP (ISO 13400) over TCP/UDP."""

    host: str = ""
    """ECU address; empty means find it by vehicle-identification broadcast."""
    discovery_address: str = "255.255.255.255"
    tcp_port: int = 13400
    udp_port: int = 13400
    logical_address: int = 0x0010
    tester_address: int = 0x0E00
    activation_type: int = 0
    alive_check: bool = True
    """Probe the entity with an alive check before flashing."""


@dataclass(frozen=True)
class SecuritySettings:
    """SecurityAccess: the odd ``level`` requests the seed, ``level + 1`` sends the key."""

    level: int = 0x01
    algorithm: str = "xor"
    """Plug-in name (``xor``, ``aes-cmac``) or ``package.module:function``."""
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Region:
    """A flash region as the ECU's bootloader addresses it."""

    name: str
    address: int
    size: int


@dataclass(frozen=True)
class Routines:
    """RoutineControl identifiers of the bootloader."""

    erase: int = 0xFF00
    check_memory: int = 0x0202
    check_dependencies: int = 0xFF01
    switch_bank: int = 0xFF02


@dataclass(frozen=True)
class Dids:
    """Data identifiers read and written around the flash."""

    version: int = 0xF189
    fingerprint: int = 0xF15A


@dataclass(frozen=True)
class Timing:
    """Client-side timing in seconds; P2/P2* announced by the ECU in its session-control
    answer replace ``p2``/``p2_star`` when they are longer."""

    p2: float = 1.0
    p2_star: float = 5.0
    max_pending: float = 60.0
    """Longest a single request may stay in NRC 0x78 before we give up."""
    busy_retries: int = 10
    busy_delay: float = 0.05
    transfer_retries: int = 3
    """How often one TransferData block is re-sent after a transient loss."""
    reconnect_delay: float = 0.5
    restart_attempts: int = 2
    """Full-sequence restarts when the ECU lost its programming session."""


@dataclass(frozen=True)
class Programming:
    """Options of the programming sequence."""

    compression: Literal["none", "zlib"] = "none"
    """Compress TransferData with zlib (dataFormatIdentifier 0x10) when the ECU supports it."""
    address_bytes: int = 4
    size_bytes: int = 4
    dual_bank: bool = False
    """The ECU keeps the previous image in a second bank; rollback switches back."""
    communication_control: bool = True
    dtc_setting: bool = True
    reset_type: int = 0x01
    reset_settle: float = 0.2
    """Seconds to wait after ECUReset before talking to the restarted ECU."""


@dataclass(frozen=True)
class EcuConfig:
    """Everything the flasher needs to know about one ECU."""

    name: str
    transport: Literal["docan", "doip"]
    regions: list[Region]
    docan: DoCanSettings = field(default_factory=DoCanSettings)
    doip: DoIpSettings = field(default_factory=DoIpSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    routines: Routines = field(default_factory=Routines)
    dids: Dids = field(default_factory=Dids)
    timing: Timing = field(default_factory=Timing)
    programming: Programming = field(default_factory=Programming)

    def __post_init__(self) -> None:
        if not self.regions:
            raise ValueError("at least one [[regions]] entry is required")

    def region(self, name: str) -> Region:
        """The region called ``name``, or an error listing the known ones."""
        for region in self.regions:
            if region.name == name:
                return region
        known = ", ".join(r.name for r in self.regions)
        raise UnknownEcuError(f"ECU {self.name} has no region {name!r} (known: {known})")


def load_ecu(path: Path | str) -> EcuConfig:
    """Load one ECU file (see docs/uds.md)."""
    return load(path, EcuConfig)


def find_ecu(directory: Path, name: str) -> EcuConfig:
    """The ECU called ``name`` among the ``*.toml`` files of ``directory``."""
    known: list[str] = []
    skipped: list[str] = []
    for path in sorted(directory.glob("*.toml")):
        try:
            ecu = load_ecu(path)
        except ConfigError as exc:  # a simulator file, or a broken ECU file
            log.debug("%s is not an ECU description: %s", path, exc)
            skipped.append(path.name)
            continue
        if ecu.name == name:
            return ecu
        known.append(ecu.name)
    # a typo in bcm.toml must not look like a campaign naming an unknown ECU
    others = f"; not ECU files (simulators or broken): {', '.join(skipped)}" if skipped else ""
    raise UnknownEcuError(
        f"unknown ECU {name!r}: no file in {directory} describes it "
        f"(known: {', '.join(known)}{others})"
    )
