"""Where the backend is and who the vehicle is to it.

A plain frozen dataclass so ``redstone_agent.config`` can load it from TOML;
``__post_init__`` raises ``ValueError`` (the loader turns that into a one-line
``ConfigError`` naming the key), so a typo in ``master.toml`` fails at start-up
instead of at the first poll hours later.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

_VIN = re.compile(r"^[A-HJ-NPR-Z0-9]{17}$")
"""ISO 3779: 17 characters, digits and capitals without I, O and Q (as the backend checks)."""


@dataclass(frozen=True)
class CloudConfig:
    """The device client's settings."""

    url: str
    """Base URL of the backend, e.g. ``https://ota.example.com:8443`` (no path)."""
    vin: str
    """The vehicle's VIN; it names the director repository and is checked in poll answers."""
    cert: Path | None = None
    """The vehicle's client certificate (PEM) for mutual TLS."""
    key: Path | None = None
    """Its private key (PEM)."""
    ca: Path | None = None
    """CA bundle that signs the server's certificate; ``None`` trusts the system's CAs."""
    timeout: float = 30.0
    """Seconds a connect or a read may block; also the deadline for reading a small answer."""
    poll_interval_s: float = 300.0
    """Seconds between polls until the server names its own interval."""

    def __post_init__(self) -> None:
        if not re.match(r"^https?://[^/?#\s]+/?$", self.url):
            raise ValueError(f"url: expected https://host[:port], got {self.url!r}")
        if not _VIN.match(self.vin):
            raise ValueError(
                f"vin: expected 17 characters A-Z/0-9 without I, O, Q, got {self.vin!r}"
            )
        if (self.cert is None) != (self.key is None):
            raise ValueError("cert and key: give both (mutual TLS) or neither")
        for name in ("timeout", "poll_interval_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name}: must be a positive number of seconds, got {value!r}")

    @property
    def base_url(self) -> str:
        """``url`` without a trailing slash, ready to have a path appended."""
        return self.url.rstrip("/")
