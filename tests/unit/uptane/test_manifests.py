"""ECU and vehicle version manifests: signing, verification, and every refusal."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from redstone_agent.uptane.errors import ManifestError
from redstone_agent.uptane.keys import generate_signer
from redstone_agent.uptane.manifests import (
    EcuManifest,
    canonical,
    sign_ecu_manifest,
    sign_vehicle_manifest,
    verify_ecu_manifest,
    verify_vehicle_manifest,
)

SHA = "cd" * 32


def _ecu(serial: str = "ECU-1", nonce: str = "") -> EcuManifest:
    return EcuManifest(serial, "fw.bin", 10, SHA, 3, nonce=nonce, report={"result": "ok"})


def test_ecu_manifest_round_trip_ed25519_and_ecdsa() -> None:
    for algorithm in ("ed25519", "ecdsa-p256"):
        key = generate_signer(algorithm)  # type: ignore[arg-type]
        envelope = sign_ecu_manifest(_ecu(nonce="n1"), key)
        got = verify_ecu_manifest(
            json.loads(canonical(envelope)),
            key.public_key,
            expected_serial="ECU-1",
            expected_nonce="n1",
        )
        assert (got.filename, got.sha256, got.release_counter, got.report) == (
            "fw.bin",
            SHA,
            3,
            {"result": "ok"},
        )


def _tamper(envelope: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    changed = json.loads(json.dumps(envelope))
    changed["signed"][key] = value
    return changed


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda e: _tamper(e, "ecu_serial", "ECU-2"), "bad signature"),
        (lambda e: {**e, "signatures": []}, "not signed by the registered key"),
        (lambda e: {"signed": "x"}, "not a signed envelope"),
        (lambda e: {**e, "signatures": "x"}, "signatures missing"),
        (lambda e: [], "not a signed envelope"),
    ],
)
def test_ecu_manifest_refusals(mutate: Any, message: str) -> None:
    key = generate_signer()
    envelope = sign_ecu_manifest(_ecu(), key)
    with pytest.raises(ManifestError, match=message):
        verify_ecu_manifest(mutate(envelope), key.public_key)


def test_ecu_manifest_from_another_key_is_refused() -> None:
    envelope = sign_ecu_manifest(_ecu(), generate_signer())
    with pytest.raises(ManifestError, match="not signed by the registered key"):
        verify_ecu_manifest(envelope, generate_signer().public_key)


def test_ecu_manifest_serial_and_nonce_expectations() -> None:
    key = generate_signer()
    envelope = sign_ecu_manifest(_ecu(nonce="a"), key)
    with pytest.raises(ManifestError, match="claims serial"):
        verify_ecu_manifest(envelope, key.public_key, expected_serial="OTHER")
    with pytest.raises(ManifestError, match="nonce does not match"):
        verify_ecu_manifest(envelope, key.public_key, expected_nonce="b")


def test_signed_but_malformed_ecu_manifest_is_refused() -> None:
    key = generate_signer()
    signed = _ecu().to_signed()
    signed["installed_image"]["length"] = "ten"
    from redstone_agent.uptane.manifests import sign_envelope

    with pytest.raises(ManifestError, match="bad numbers"):
        verify_ecu_manifest(sign_envelope(signed, [key]), key.public_key)
    del signed["installed_image"]
    with pytest.raises(ManifestError, match="missing"):
        verify_ecu_manifest(sign_envelope(signed, [key]), key.public_key)


def _vehicle(**kwargs: Any) -> tuple[bytes, Any, Any]:
    primary, ecu = generate_signer(), generate_signer()
    reports = {"ECU-1": sign_ecu_manifest(_ecu(), ecu)}
    data = sign_vehicle_manifest("VIN1", "TBOX", "nonce-1", reports, primary, **kwargs)
    return data, primary, ecu


def test_vehicle_manifest_verifies_every_ecu_manifest() -> None:
    data, primary, ecu = _vehicle()
    manifest = verify_vehicle_manifest(
        data,
        primary.public_key,
        {"ECU-1": ecu.public_key},
        expected_nonce="nonce-1",
        expected_vin="VIN1",
    )
    assert manifest.ecus["ECU-1"].sha256 == SHA
    assert (manifest.vin, manifest.primary_ecu_serial) == ("VIN1", "TBOX")


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("wrong primary key", "not signed by the registered key"),
        ("unregistered ecu", "unregistered ECU 'ECU-1'"),
        ("wrong ecu key", "ECU manifest: not signed by the registered key"),
        ("wrong vin", "is for 'VIN1', expected 'VIN2'"),
        ("too big", "exceeds"),
        ("not json", "not JSON"),
        ("stale", "older than"),
    ],
)
def test_vehicle_manifest_refusals(case: str, message: str) -> None:
    data, primary, ecu = _vehicle(clock=lambda: datetime.now(UTC) - timedelta(hours=2))
    primary_key, ecu_keys = primary.public_key, {"ECU-1": ecu.public_key}
    kwargs: dict[str, Any] = {"expected_nonce": "nonce-1"}
    if case == "wrong primary key":
        primary_key = generate_signer().public_key
    elif case == "unregistered ecu":
        ecu_keys = {}
    elif case == "wrong ecu key":
        ecu_keys = {"ECU-1": generate_signer().public_key}
    elif case == "wrong vin":
        kwargs["expected_vin"] = "VIN2"
    elif case == "too big":
        kwargs["max_bytes"] = 100
    elif case == "not json":
        data = b"\xff" + data
    elif case == "stale":
        kwargs["max_age"] = timedelta(minutes=10)
    with pytest.raises(ManifestError, match=message):
        verify_vehicle_manifest(data, primary_key, ecu_keys, **kwargs)
