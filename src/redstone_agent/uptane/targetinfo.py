"""The Uptane fields carried in a TUF target's ``custom`` object, and how to read them.

Image repository target ``custom``::

    {"hardware_ids": ["hw-a", ...], "release_counter": 3, "version": "1.2.0",
     "delta_source_sha256": "<hex>"}          # the last two optional, others allowed

Director target ``custom``::

    {"ecus": {"<serial>": {"hardware_id": "hw-a"}, ...}, "release_counter": 3,
     "delta_source_sha256": "<hex>"}          # the last optional

Readers validate types strictly: a signed but malformed field is still an
attack surface (e.g. a string release counter comparing oddly).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from redstone_agent.uptane.errors import UptaneError
from redstone_agent.uptane.tufapi import TargetFile

_HEX = frozenset("0123456789abcdef")


def _sha256_or_none(value: object, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) != 64 or not set(value) <= _HEX:
        raise UptaneError(f"{where}: delta_source_sha256 must be 64 lowercase hex digits")
    return value


def _counter(value: object, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise UptaneError(f"{where}: release_counter must be a non-negative integer")
    return value


@dataclass(frozen=True)
class ImageFields:
    """What the image repository (OEM or supplier) says about an image."""

    hardware_ids: tuple[str, ...]
    release_counter: int
    delta_source_sha256: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_custom(self) -> dict[str, Any]:
        """The signed form; refuses what :meth:`from_target` (every verifier) would reject."""
        where = "image"
        if not self.hardware_ids or not all(isinstance(h, str) and h for h in self.hardware_ids):
            raise UptaneError(f"{where}: hardware_ids must be a non-empty list of strings")
        _counter(self.release_counter, where)
        _sha256_or_none(self.delta_source_sha256, where)
        custom: dict[str, Any] = dict(self.extra)
        custom["hardware_ids"] = list(self.hardware_ids)
        custom["release_counter"] = self.release_counter
        if self.delta_source_sha256 is not None:
            custom["delta_source_sha256"] = self.delta_source_sha256
        return custom

    @classmethod
    def from_target(cls, target: TargetFile) -> ImageFields:
        where = f"image target {target.path}"
        custom = target.custom
        if not isinstance(custom, dict):
            raise UptaneError(f"{where}: custom must be an object")
        hw = custom.get("hardware_ids")
        if not isinstance(hw, list) or not hw or not all(isinstance(h, str) for h in hw):
            raise UptaneError(f"{where}: hardware_ids must be a non-empty list of strings")
        extra = {
            k: v
            for k, v in custom.items()
            if k not in {"hardware_ids", "release_counter", "delta_source_sha256"}
        }
        return cls(
            tuple(hw),
            _counter(custom.get("release_counter"), where),
            _sha256_or_none(custom.get("delta_source_sha256"), where),
            extra,
        )


@dataclass(frozen=True)
class DirectorFields:
    """What the director says: which ECUs (serial → hardware id) get this target."""

    ecus: Mapping[str, str]
    release_counter: int
    delta_source_sha256: str | None = None

    def to_custom(self) -> dict[str, Any]:
        custom: dict[str, Any] = {
            "ecus": {serial: {"hardware_id": hw} for serial, hw in sorted(self.ecus.items())},
            "release_counter": self.release_counter,
        }
        if self.delta_source_sha256 is not None:
            custom["delta_source_sha256"] = self.delta_source_sha256
        return custom

    @classmethod
    def from_target(cls, target: TargetFile) -> DirectorFields:
        where = f"director target {target.path}"
        custom = target.custom
        ecus = custom.get("ecus") if isinstance(custom, dict) else None
        if not isinstance(ecus, dict) or not ecus:
            raise UptaneError(f"{where}: custom.ecus must name at least one ECU")
        parsed: dict[str, str] = {}
        for serial, info in ecus.items():
            hw = info.get("hardware_id") if isinstance(info, dict) else None
            if not isinstance(hw, str) or not hw:
                raise UptaneError(f"{where}: ECU {serial} lacks a hardware_id")
            parsed[serial] = hw
        return cls(
            parsed,
            _counter(custom.get("release_counter"), where),
            _sha256_or_none(custom.get("delta_source_sha256"), where),
        )


def sha256_of(target: TargetFile, where: str) -> str:
    """The target's sha256: required, because cross-checks and manifests compare it."""
    digest = target.hashes.get("sha256")
    if digest is None:
        raise UptaneError(f"{where}: target {target.path} has no sha256 hash")
    return digest


def published_name(path: str, sha256: str) -> str:
    """Where a target is served (consistent snapshot): ``dir/<sha256>.<basename>``."""
    dirname, sep, basename = path.rpartition("/")
    return f"{dirname}{sep}{sha256}.{basename}"
