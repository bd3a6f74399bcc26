"""ECU and vehicle version manifests: signed reports of what is installed.

Both are JSON envelopes ``{"signed": {...}, "signatures": [{"keyid", "sig"}]}``
signed over the canonical JSON (OLPC dialect, as TUF) of ``signed``. The
vehicle manifest wraps the ECU manifests verbatim and carries the backend's
nonce, so a recorded manifest cannot be replayed. Formats: docs/uptane.md.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from securesystemslib.exceptions import FormatError
from securesystemslib.formats import encode_canonical

from redstone_agent.uptane.errors import ManifestError
from redstone_agent.uptane.tufapi import Key, Signature, Signer

ECU_TYPE = "ecu_version_manifest"
VEHICLE_TYPE = "vehicle_version_manifest"
MAX_MANIFEST_BYTES = 1024 * 1024
Clock = Callable[[], datetime]


def new_nonce() -> str:
    """A fresh unguessable nonce (128 bits, hex) for the backend to hand out."""
    return secrets.token_hex(16)


def canonical(obj: Any) -> bytes:
    """Canonical JSON bytes (what signatures cover)."""
    try:
        text = encode_canonical(obj)
    except FormatError as exc:
        raise ManifestError(f"cannot encode as canonical JSON: {exc}") from exc
    assert text is not None
    return text.encode("utf-8")


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: object, where: str) -> datetime:
    if not isinstance(value, str):
        raise ManifestError(f"{where}: timestamp missing")
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError as exc:
        raise ManifestError(f"{where}: bad timestamp {value!r}") from exc


@dataclass(frozen=True)
class EcuManifest:
    """What one ECU reports: the image it runs, in the terms the director used."""

    ecu_serial: str
    filename: str
    length: int
    sha256: str
    release_counter: int
    nonce: str = ""
    timestamp: datetime = field(default_factory=_now)
    attacks_detected: str = ""
    report: Mapping[str, Any] = field(default_factory=dict)
    """Free-form install report (result code, slot, error text)."""

    def to_signed(self) -> dict[str, Any]:
        return {
            "type": ECU_TYPE,
            "ecu_serial": self.ecu_serial,
            "installed_image": {
                "filename": self.filename,
                "length": self.length,
                "hashes": {"sha256": self.sha256},
                "release_counter": self.release_counter,
            },
            "nonce": self.nonce,
            "timestamp": _iso(self.timestamp),
            "attacks_detected": self.attacks_detected,
            "report": dict(self.report),
        }

    @classmethod
    def from_signed(cls, signed: Any) -> EcuManifest:
        try:
            if signed["type"] != ECU_TYPE:
                raise ManifestError(f"expected {ECU_TYPE}, got {signed['type']!r}")
            image = signed["installed_image"]
            manifest = cls(
                ecu_serial=signed["ecu_serial"],
                filename=image["filename"],
                length=image["length"],
                sha256=image["hashes"]["sha256"],
                release_counter=image["release_counter"],
                nonce=signed["nonce"],
                timestamp=_parse_time(signed["timestamp"], "ECU manifest"),
                attacks_detected=signed["attacks_detected"],
                report=signed["report"],
            )
        except (KeyError, TypeError) as exc:
            raise ManifestError(f"malformed ECU manifest: missing {exc}") from exc
        _require_types(manifest)
        return manifest


def _require_types(m: EcuManifest) -> None:
    strings = (m.ecu_serial, m.filename, m.sha256, m.nonce, m.attacks_detected)
    numbers = (m.length, m.release_counter)
    if not all(isinstance(s, str) for s in strings) or not isinstance(m.report, dict):
        raise ManifestError(f"malformed ECU manifest for {m.ecu_serial!r}")
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers):
        raise ManifestError(f"malformed ECU manifest for {m.ecu_serial!r}: bad numbers")


@dataclass(frozen=True)
class VehicleManifest:
    """A verified vehicle manifest: every ECU manifest in it verified too."""

    vin: str
    primary_ecu_serial: str
    nonce: str
    timestamp: datetime
    ecus: Mapping[str, EcuManifest]


def sign_envelope(signed: dict[str, Any], signers: list[Signer]) -> dict[str, Any]:
    """Wrap ``signed`` with one signature per signer over its canonical JSON."""
    payload = canonical(signed)
    return {"signed": signed, "signatures": [s.sign(payload).to_dict() for s in signers]}


def verify_envelope(envelope: Any, key: Key, what: str) -> dict[str, Any]:
    """Return ``envelope["signed"]`` if ``key`` signed it; else :class:`ManifestError`."""
    if not isinstance(envelope, dict) or not isinstance(envelope.get("signed"), dict):
        raise ManifestError(f"{what}: not a signed envelope")
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list):
        raise ManifestError(f"{what}: signatures missing")
    payload = canonical(envelope["signed"])
    for raw in signatures:
        try:
            signature = Signature.from_dict(dict(raw))
        except (KeyError, TypeError, ValueError):
            continue
        if signature.keyid != key.keyid:
            continue
        try:
            key.verify_signature(signature, payload)
        except Exception as exc:
            raise ManifestError(f"{what}: bad signature by key {key.keyid[:12]}") from exc
        return dict(envelope["signed"])
    raise ManifestError(f"{what}: not signed by the registered key {key.keyid[:12]}")


def sign_ecu_manifest(manifest: EcuManifest, signer: Signer) -> dict[str, Any]:
    """The ECU signs its own report with its ECU key."""
    return sign_envelope(manifest.to_signed(), [signer])


def verify_ecu_manifest(
    envelope: Any,
    key: Key,
    *,
    expected_serial: str | None = None,
    expected_nonce: str | None = None,
) -> EcuManifest:
    """Verify an ECU manifest against the ECU's registered public key."""
    manifest = EcuManifest.from_signed(verify_envelope(envelope, key, "ECU manifest"))
    if expected_serial is not None and manifest.ecu_serial != expected_serial:
        raise ManifestError(
            f"ECU manifest claims serial {manifest.ecu_serial!r}, expected {expected_serial!r}"
        )
    if expected_nonce is not None and manifest.nonce != expected_nonce:
        raise ManifestError(f"ECU manifest of {manifest.ecu_serial}: nonce does not match")
    return manifest


def sign_vehicle_manifest(
    vin: str,
    primary_ecu_serial: str,
    nonce: str,
    ecu_manifests: Mapping[str, dict[str, Any]],
    signer: Signer,
    *,
    clock: Clock = _now,
) -> bytes:
    """The Primary bundles the (already signed) ECU manifests and signs with its key."""
    signed = {
        "type": VEHICLE_TYPE,
        "vin": vin,
        "primary_ecu_serial": primary_ecu_serial,
        "nonce": nonce,
        "timestamp": _iso(clock()),
        "ecu_version_manifests": dict(ecu_manifests),
    }
    return canonical(sign_envelope(signed, [signer]))


def verify_vehicle_manifest(
    data: bytes,
    primary_key: Key,
    ecu_keys: Mapping[str, Key],
    *,
    expected_nonce: str,
    expected_vin: str | None = None,
    max_bytes: int = MAX_MANIFEST_BYTES,
    max_age: timedelta | None = None,
    clock: Clock = _now,
) -> VehicleManifest:
    """Backend side: verify the Primary's signature, the nonce and every ECU manifest."""
    if len(data) > max_bytes:
        raise ManifestError(f"vehicle manifest of {len(data)} bytes exceeds {max_bytes}")
    try:
        envelope = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"vehicle manifest is not JSON: {exc}") from exc
    signed = verify_envelope(envelope, primary_key, "vehicle manifest")
    if signed.get("type") != VEHICLE_TYPE:
        raise ManifestError(f"expected {VEHICLE_TYPE}, got {signed.get('type')!r}")
    vin, primary = signed.get("vin"), signed.get("primary_ecu_serial")
    if not isinstance(vin, str) or not isinstance(primary, str):
        raise ManifestError("vehicle manifest lacks vin or primary_ecu_serial")
    if expected_vin is not None and vin != expected_vin:
        raise ManifestError(f"vehicle manifest is for {vin!r}, expected {expected_vin!r}")
    if signed.get("nonce") != expected_nonce:
        raise ManifestError("vehicle manifest nonce does not match (replayed or stale)")
    moment = _parse_time(signed.get("timestamp"), "vehicle manifest")
    if max_age is not None and clock() - moment > max_age:
        raise ManifestError(f"vehicle manifest is older than {max_age}")
    reports = signed.get("ecu_version_manifests")
    if not isinstance(reports, dict):
        raise ManifestError("vehicle manifest lacks ecu_version_manifests")
    ecus: dict[str, EcuManifest] = {}
    for serial, envelope_of_ecu in reports.items():
        key = ecu_keys.get(serial)
        if key is None:
            raise ManifestError(f"vehicle manifest reports unregistered ECU {serial!r}")
        ecus[serial] = verify_ecu_manifest(envelope_of_ecu, key, expected_serial=serial)
    return VehicleManifest(vin, primary, expected_nonce, moment, ecus)


def installation_gaps(
    manifest: VehicleManifest, expected_sha256: Mapping[str, str]
) -> dict[str, str]:
    """ECU serial → why it does not run its assigned image (empty: fully installed).

    This is how a partial installation shows up: some ECUs report the new
    image, others still the old one, or are silent.
    """
    gaps: dict[str, str] = {}
    for serial, sha256 in expected_sha256.items():
        report = manifest.ecus.get(serial)
        if report is None:
            gaps[serial] = "no manifest reported"
        elif report.sha256 != sha256:
            gaps[serial] = f"runs {report.filename} ({report.sha256[:12]}), not the assigned image"
    return gaps
