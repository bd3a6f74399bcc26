"""The ``[sub]`` section of a domain controller's config file (with ``[slots]`` beside it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class SomeIpConfig:
    """Where this Sub is on the in-vehicle network."""

    instance_id: int
    """SOME/IP instance of this Sub (unique per vehicle; the Master's config names it)."""
    address: str
    """This node's IP address on the vehicle network."""
    port: int = 30510
    """Control service port; the status service uses ``port + 1``."""
    daemon_socket: str = "/run/someipyd.sock"


@dataclass(frozen=True)
class TrustConfig:
    """The Sub's own Uptane anchors (never taken from the Master)."""

    director_root: Path
    image_root: Path | None = None
    """Needed for full verification; leave out on ECUs configured for partial."""
    verification: Literal["full", "partial"] = "full"
    ecu_key: Path | None = None
    """PEM private key that signs this ECU's version manifest."""


@dataclass(frozen=True)
class HealthConfig:
    """What must hold after booting a new slot before it may be committed."""

    units: list[str] = field(default_factory=list)
    """systemd units that must be active (``systemctl is-active``)."""
    command: list[str] = field(default_factory=list)
    """A command that must exit 0 (argv, no shell)."""
    timeout: float = 60.0
    auto_commit: bool = False
    """Commit on a healthy boot without waiting for the Master's Commit."""


@dataclass(frozen=True)
class ProxiedEcuConfig:
    """A legacy UDS ECU on this Sub's bus that the Sub flashes for the Master
    (``[[sub.uds-ecus]]``, docs/someip.md §11)."""

    serial: str
    """The serial the director assigns targets to (the Master's ``behind`` ECU)."""
    hardware_id: str
    """Checked against the director's and the image repository's claims."""
    uds_config: Path
    """The ECU's UDS file: addressing, security, regions (docs/uds.md §2)."""
    installed_target: str = ""
    """The factory image's target name (the Sub journals every later install)."""
    ecu_key: Path | None = None
    """Signs this ECU's version manifest (default: the Sub's ``trust.ecu-key``)."""

    def __post_init__(self) -> None:
        if not self.serial:
            raise ValueError("serial must not be empty")
        if not self.hardware_id:
            raise ValueError(f"ECU {self.serial}: hardware-id must not be empty")


@dataclass(frozen=True)
class SubConfig:
    """Identity, network, trust, health and reboot policy of one Sub."""

    ecu_serial: str
    hardware_id: str
    someip: SomeIpConfig
    trust: TrustConfig
    state_dir: Path = Path("/var/lib/redstone/sub")
    health: HealthConfig = field(default_factory=HealthConfig)
    reboot_command: list[str] = field(default_factory=lambda: ["systemctl", "reboot"])
    dbus: Literal["system", "session", "none"] = "system"
    log_format: Literal["text", "json"] = "text"
    """``json``: one JSON object per line with state/seq/error/target fields."""
    uds_ecus: list[ProxiedEcuConfig] = field(default_factory=list)
    """UDS ECUs this Sub flashes on the Master's behalf (interface 1.1)."""

    def __post_init__(self) -> None:
        seen: dict[str, int] = {}
        for i, ecu in enumerate(self.uds_ecus):
            if ecu.serial == self.ecu_serial:
                raise ValueError(
                    f"uds-ecus[{i}].serial {ecu.serial!r} is this Sub's own ecu-serial"
                )
            if ecu.serial in seen:
                raise ValueError(
                    f"uds-ecus[{i}].serial {ecu.serial!r} repeats uds-ecus[{seen[ecu.serial]}]"
                )
            seen[ecu.serial] = i
