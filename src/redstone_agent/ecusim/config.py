"""Simulator configuration (TOML, see docs/uds.md "Simulator configuration")."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from redstone_agent.config import load
from redstone_agent.uds.config import DoCanSettings, Region, Routines, SecuritySettings


@dataclass(frozen=True)
class Faults:
    """Misbehaviour to inject; all off by default. Counts apply once per simulator start."""

    drop_every: int = 0
    """Swallow every N-th diagnostic response (0 = never)."""
    drop_services: list[int] = field(default_factory=list)
    """Count and drop only responses to these service ids (empty = all)."""
    delay: float = 0.0
    """Seconds added before every response."""
    pending_storm: int = 0
    """NRC 0x78 responses sent before each final response of ``pending_services``."""
    pending_interval: float = 0.05
    pending_services: list[int] = field(default_factory=lambda: [0x31, 0x36])
    busy_repeat: int = 0
    """NRC 0x21 answers to the first RequestDownload(s) before accepting one."""
    reset_after_blocks: int = 0
    """The ECU resets itself (watchdog) after this many TransferData blocks, once."""
    power_loss_after_blocks: int = 0
    """Power is lost after this many blocks, once: silent for ``power_loss_time``."""
    power_loss_time: float = 1.0
    wrong_checksum: bool = False
    """The check-memory routine always reports a mismatch."""
    boot_failure: int = 0
    """The next N freshly flashed images fail to start after reset (the bootloader
    marks them invalid and falls back to the other bank if it has one)."""
    dtcs_after_flash: list[int] = field(default_factory=list)
    """DTC codes the ECU sets (status ``ecusim.dtc.ACTIVE_STATUS``) each time it starts
    a freshly flashed image: "the update broke something" for diagnostics tests."""

    def __post_init__(self) -> None:
        for code in self.dtcs_after_flash:
            _check_dtc_code(code)


@dataclass(frozen=True)
class SimSecurity(SecuritySettings):
    """The ECU's side of SecurityAccess, with its attempt counter and lockout."""

    seed_length: int = 4
    max_attempts: int = 3
    lockout: float = 10.0
    """Seconds seeds are refused after ``max_attempts`` wrong keys."""


@dataclass(frozen=True)
class SimMemory:
    """The flash: regions, optional second bank, where the version string lives."""

    regions: list[Region] = field(default_factory=lambda: [Region("app", 0x0001_0000, 0x0004_0000)])
    dual_bank: bool = False
    version_offset: int = 0
    """Offset of the ASCII version inside the first region of an image."""
    version_length: int = 16
    initial_version: str = "1.0.0"
    """Version of the image the ECU ships with (in bank A)."""


@dataclass(frozen=True)
class SimDtc:
    """A DTC in the ECU's fault memory at power-up (factory state)."""

    code: int
    """3-byte DTC, e.g. ``0xC14000`` (U0140-00)."""
    status: int = 0x2F
    """Status byte; the default is an active fault (testFailed, testFailedThisOperationCycle,
    pendingDTC, confirmedDTC, testFailedSinceLastClear)."""

    def __post_init__(self) -> None:
        _check_dtc_code(self.code)
        if not 0 <= self.status <= 0xFF:
            raise ValueError(f"DTC 0x{self.code:06X}: status must be 0x00..0xFF")


@dataclass(frozen=True)
class SimDiagnostics:
    """Fault memory (0x19, 0x14) and the software identification DIDs besides the version."""

    dtcs: list[SimDtc] = field(default_factory=list)
    availability_mask: int = 0xFF
    """DTCStatusAvailabilityMask: status bits the ECU supports (others read as 0)."""
    dids: dict[str, str] = field(default_factory=lambda: {"0xF195": "ECUSIM-1.0"})
    """DID (hex, e.g. ``0xF195``) → ASCII value answered to ReadDataByIdentifier."""

    def __post_init__(self) -> None:
        if not 0 < self.availability_mask <= 0xFF:
            raise ValueError("availability-mask must be 0x01..0xFF")
        self.did_values()  # refuse bad keys at load time

    def did_values(self) -> dict[int, bytes]:
        """The DIDs by number, values as bytes."""
        values: dict[int, bytes] = {}
        for key, value in self.dids.items():
            try:
                did = int(key, 16)
            except ValueError:
                did = -1
            if not 0 <= did <= 0xFFFF:
                raise ValueError(f"dids: {key!r} is not a DID (write it in hex, e.g. 0xF195)")
            values[did] = value.encode("ascii", "replace")
        return values


def _check_dtc_code(code: int) -> None:
    if not 0 < code <= 0xFFFFFF:
        raise ValueError(f"DTC 0x{code:X} must be a 3-byte code other than 0")


@dataclass(frozen=True)
class SimDoIp:
    """The DoIP entity. Port 0 picks a free port (the simulator prints which)."""

    host: str = "127.0.0.1"
    tcp_port: int = 13400
    udp_port: int = 13400
    logical_address: int = 0x0010
    vin: str = "REDSTONESIM000001"
    eid: str = "02005e000001"
    gid: str = "02005e000000"
    max_block_length: int = 0x10002
    """maxNumberOfBlockLength announced on DoIP (includes SID and counter)."""


@dataclass(frozen=True)
class SimDoCan(DoCanSettings):
    """The ISO-TP side: same addresses as the tester's config (tx_id = tester → ECU)."""

    max_block_length: int = 0xFFF


@dataclass(frozen=True)
class SimConfig:
    """One simulated ECU."""

    name: str
    docan: SimDoCan | None = None
    doip: SimDoIp | None = None
    security: SimSecurity = field(default_factory=lambda: SimSecurity(params={"mask": "5a3c9ee1"}))
    memory: SimMemory = field(default_factory=SimMemory)
    routines: Routines = field(default_factory=Routines)
    version_did: int = 0xF189
    fingerprint_did: int = 0xF15A
    compression: list[Literal["none", "zlib"]] = field(default_factory=lambda: ["none", "zlib"])
    s3: float = 5.0
    """Seconds without a request before a non-default session falls back to default."""
    p2_ms: int = 50
    p2_star_ms: int = 5000
    erase_time: float = 0.05
    """Seconds an erase takes (answered with NRC 0x78 meanwhile)."""
    reset_time: float = 0.05
    faults: Faults = field(default_factory=Faults)
    diagnostics: SimDiagnostics = field(default_factory=SimDiagnostics)

    def __post_init__(self) -> None:
        if self.docan is None and self.doip is None:
            raise ValueError("configure at least one of [docan] and [doip]")
        taken = {self.version_did, self.fingerprint_did} & set(self.diagnostics.did_values())
        if taken:
            raise ValueError(
                f"diagnostics.dids: 0x{taken.pop():04X} is already the version or fingerprint DID"
            )


def load_sim(path: Path | str) -> SimConfig:
    """Load a simulator TOML file."""
    return load(path, SimConfig)
