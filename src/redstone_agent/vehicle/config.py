"""``[master.vehicle]``: where the vehicle's state comes from and which rules must hold."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class VehicleSettings:
    dbc: Path
    """The DBC file that decodes the frames (``etc/redstone/vehicle.dbc``)."""
    interface: str = "socketcan"
    """python-can interface (``socketcan`` in a vehicle; ``virtual``/``udp_multicast`` in tests)."""
    channel: str = "can0"
    bus_options: dict[str, int | str] = field(default_factory=dict)
    """Further python-can bus arguments, e.g. ``{ port = 43114 }`` for ``udp_multicast``."""
    rules: list[str] = field(default_factory=list)
    """Checked before every UDS flash and every activation, and watched while they run,
    e.g. ``speed_kph <= 0``, ``gear in ["P"]``, ``battery_v >= 12.2``."""
    download_rules: list[str] = field(default_factory=list)
    """Checked before the images are downloaded (e.g. ``soc_pct >= 30``)."""
    freshness_ms: int = 1000
    """A signal older than this is unknown, and an unknown signal fails every rule on it."""
    on_break: Literal["finish", "abort"] = "finish"
    """A rule that breaks while an ECU is flashed: ``finish`` lets that ECU finish
    (the rest wait); ``abort`` stops it at the next block and flashes it again later."""

    def __post_init__(self) -> None:
        if self.freshness_ms <= 0:
            raise ValueError("freshness-ms must be positive")
