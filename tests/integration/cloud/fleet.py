"""A test fleet driven through the real API: CA, model, packages, vehicles, signed manifests."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy.orm import Session

from redstone_agent.uptane.keys import Signer, generate_signer, public_key_to_dict
from redstone_agent.uptane.manifests import EcuManifest, sign_ecu_manifest, sign_vehicle_manifest
from redstone_cloud.db.models import DeviceCertificate
from redstone_cloud.services import inventory, pki

ADMIN_TOKEN = "test-admin-token"
CERT_HEADER = "X-Client-Cert"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

MODEL = {
    "name": "sedan",
    "description": "test sedan",
    "ecus": [
        {"role": "tbox", "hardware_id": "tbox-hw", "kind": "primary"},
        {"role": "adas", "hardware_id": "adas-hw", "kind": "sub"},
        {"role": "bcm", "hardware_id": "bcm-hw", "kind": "uds"},
    ],
}


def publication_order(files: dict[str, bytes]) -> list[str]:
    """Image-repository files in the order the backend accepts them: roots first,
    timestamp last (``root.json`` is an alias the backend derives itself)."""
    names = [n for n in files if n != "root.json"]
    return sorted(names, key=lambda n: (not n.endswith("root.json"), "timestamp" in n, n))


def vin_of(n: int) -> str:
    return f"RSTEST{n:011d}"


def make_csr(common_name: str = "device") -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
    )
    return key, csr.public_bytes(serialization.Encoding.PEM)


def add_model(session: Session) -> None:
    """The test model, through the inventory service (no server needed)."""
    slots = [inventory.EcuSlot(**e) for e in MODEL["ecus"]]  # type: ignore[arg-type]
    inventory.create_model(session, "test", "sedan", "", slots)


def add_vehicle(
    session: Session, key_dir: Path, n: int, serial_prefix: str | None = None
) -> tuple[DeviceCertificate, ec.EllipticCurvePrivateKey]:
    """Vehicle ``n`` of the test model with fresh ECU keys (serials ``<prefix>-<role>``,
    by default ``<n>-<role>``) and a client certificate from the issuing CA."""
    prefix = str(n) if serial_prefix is None else serial_prefix
    ecus = [
        inventory.EcuSpec(
            f"{prefix}-{e['role']}",
            e["hardware_id"],
            public_key_to_dict(generate_signer().public_key),
            e["kind"] == "primary",
        )
        for e in MODEL["ecus"]
    ]
    inventory.register_vehicle(session, "test", vin_of(n), "sedan", ecus)
    device_key, csr = make_csr()
    return pki.issue(session, key_dir, "test", vin_of(n), csr), device_key


@dataclass
class SimVehicle:
    vin: str
    signers: dict[str, Signer]
    """ECU serial -> its key; the first is the primary."""
    hardware: dict[str, str]
    cert_pem: str = ""
    cert_serial: str = ""
    key: ec.EllipticCurvePrivateKey | None = None
    installed: dict[str, tuple[str, int, str, int]] = field(default_factory=dict)
    """ECU serial -> (filename, length, sha256, release_counter)."""

    @property
    def primary(self) -> str:
        return next(iter(self.signers))

    def device_headers(self) -> dict[str, str]:
        return {CERT_HEADER: quote(self.cert_pem)}


class Fleet:
    """Builds state through the admin API and plays vehicles against the device API."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.vehicles: dict[str, SimVehicle] = {}
        self._ca = False

    def admin(self, method: str, path: str, **kwargs: Any) -> Response:
        headers = {**ADMIN, **kwargs.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kwargs)

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.admin(method, path, **kwargs)
        assert response.status_code in (200, 201), (path, response.status_code, response.text)
        return response.json()

    def setup_pki(self) -> None:
        if not self._ca:
            self.ok("POST", "/api/v1/pki/cas", json={"name": "oem-root"})
            self.ok("POST", "/api/v1/pki/cas", json={"name": "oem-devices", "parent": "oem-root"})
            self._ca = True

    def model(self) -> None:
        self.ok("POST", "/api/v1/models", json=MODEL)

    def package(
        self, name: str, version: str, hardware_id: str, data: bytes, release_counter: int = 1
    ) -> dict[str, Any]:
        return self.ok(
            "PUT",
            f"/api/v1/packages/{name}/{version}",
            params={"hardware_id": hardware_id, "release_counter": release_counter},
            content=data,
        )

    def assign(self, vehicle: SimVehicle, *targets: str) -> None:
        """Offer ``targets`` to ``vehicle`` in a campaign of its own, so that its director
        names them (a vehicle downloads only its assignment)."""
        name = f"assign-{vehicle.vin}-{len(self.vehicles)}-{'-'.join(targets)}"[:128]
        spec = {"name": name, "targeting": {"vins": [vehicle.vin]}, "packages": list(targets)}
        self.ok("POST", "/api/v1/campaigns", json=spec)
        self.ok("POST", f"/api/v1/campaigns/{name}/start")
        assert self.poll(vehicle)["update"] is not None

    def vehicle(self, n: int, baseline: str | None = None) -> SimVehicle:
        self.setup_pki()
        vin = vin_of(n)
        hardware = {f"{vin}-tbox": "tbox-hw", f"{vin}-adas": "adas-hw", f"{vin}-bcm": "bcm-hw"}
        signers: dict[str, Signer] = {serial: generate_signer() for serial in hardware}
        body = {
            "vin": vin,
            "model": "sedan",
            "baseline": baseline,
            "ecus": [
                {
                    "serial": serial,
                    "hardware_id": hw,
                    "primary": hw == "tbox-hw",
                    "public_key": public_key_to_dict(signers[serial].public_key),
                }
                for serial, hw in hardware.items()
            ],
        }
        self.ok("POST", "/api/v1/vehicles", json=body)
        key, csr = make_csr()
        cert = self.ok(
            "POST", f"/api/v1/vehicles/{vin}/certificates", json={"csr_pem": csr.decode()}
        )
        vehicle = SimVehicle(vin, signers, hardware, cert["cert_pem"], cert["serial"], key)
        self.vehicles[vin] = vehicle
        return vehicle

    # --- device side ------------------------------------------------------------------------

    def device(self, vehicle: SimVehicle, method: str, path: str, **kwargs: Any) -> Response:
        headers = {**vehicle.device_headers(), **kwargs.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kwargs)

    def nonce(self, vehicle: SimVehicle) -> str:
        response = self.device(vehicle, "POST", "/api/v1/device/nonce")
        assert response.status_code == 200, response.text
        return str(response.json()["nonce"])

    def manifest_bytes(
        self, vehicle: SimVehicle, nonce: str, signer_override: Signer | None = None
    ) -> bytes:
        envelopes = {}
        for serial, signer in vehicle.signers.items():
            filename, length, sha256, counter = vehicle.installed.get(
                serial, ("factory.img", 1, hashlib.sha256(b"factory").hexdigest(), 0)
            )
            report = EcuManifest(serial, filename, length, sha256, counter, nonce=nonce)
            envelopes[serial] = sign_ecu_manifest(report, signer)
        primary_signer = signer_override or vehicle.signers[vehicle.primary]
        return sign_vehicle_manifest(vehicle.vin, vehicle.primary, nonce, envelopes, primary_signer)

    def send_manifest(self, vehicle: SimVehicle) -> Response:
        data = self.manifest_bytes(vehicle, self.nonce(vehicle))
        return self.device(vehicle, "POST", "/api/v1/device/manifest", content=data)

    def install(self, vehicle: SimVehicle, update: dict[str, Any]) -> None:
        """Pretend the vehicle installed what the poll offered."""
        for serial, item in update["ecus"].items():
            vehicle.installed[serial] = (
                item["target"],
                item["length"],
                item["sha256"],
                item["release_counter"],
            )

    def poll(self, vehicle: SimVehicle) -> dict[str, Any]:
        response = self.device(vehicle, "GET", "/api/v1/device/poll")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def event(self, vehicle: SimVehicle, kind: str, **extra: Any) -> Response:
        return self.device(vehicle, "POST", "/api/v1/device/events", json={"kind": kind, **extra})
