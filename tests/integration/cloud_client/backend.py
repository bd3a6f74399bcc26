"""A real ``redstone-cloud serve`` for the device client, driven only through its admin API.

The server's TLS client-CA bundle is written when ``serve`` starts, so every
vehicle certificate here comes from the CA that ``prepare_tls_server`` made
(no new CAs once it runs). The vehicle side gets files, as on a TBox: a PEM
certificate, its key and the CA bundle.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization

from redstone_agent.uptane.keys import Signer, generate_signer, public_key_to_dict
from redstone_cloud.db import migrate
from redstone_cloud.db.engine import make_engine
from redstone_cloud.settings import token_digest
from tests.integration.cloud.fleet import ADMIN, ADMIN_TOKEN, MODEL, make_csr, vin_of
from tests.integration.cloud.server import ServerFiles, prepare_tls_server, serving

IMAGES = {
    "tbox-2.0": ("tbox-hw", b"tbox image two " * 200),
    "adas-2.0": ("adas-hw", b"adas image two " * 200),
}
"""Package target -> (hardware id, bytes); uploaded with release counter 2."""


@dataclass
class Car:
    """A registered vehicle as its TBox would hold it: TLS files and one key per ECU."""

    vin: str
    cert: Path
    key: Path
    cert_serial: str
    signers: dict[str, Signer]
    """ECU serial -> key registered for it; the first is the primary."""

    @property
    def primary(self) -> str:
        return next(iter(self.signers))


class Backend:
    """Admin-side helper around one running server."""

    def __init__(self, url: str, ca: Path, files: Path, admin: httpx.Client) -> None:
        self.url = url
        self.ca = ca
        self.files = files
        self.admin = admin

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.admin.request(method, path, **kwargs)
        assert response.status_code in (200, 201), (path, response.status_code, response.text)
        return response.json()

    def register(
        self, n: int, signers: dict[str, Signer] | None = None, baseline: str | None = None
    ) -> Car:
        """A vehicle of the test model (on ``baseline``, if given) with a client
        certificate and its ECU keys: fresh ones, or ``signers`` (ECU role -> key, e.g.
        keys on a token)."""
        vin = vin_of(n)
        signers = {
            f"{vin}-{e['role']}": (signers or {}).get(e["role"]) or generate_signer()
            for e in MODEL["ecus"]
        }
        ecus = [
            {
                "serial": serial,
                "hardware_id": e["hardware_id"],
                "primary": e["kind"] == "primary",
                "public_key": public_key_to_dict(signers[serial].public_key),
            }
            for serial, e in zip(signers, MODEL["ecus"], strict=True)
        ]
        body = {"vin": vin, "model": "sedan", "baseline": baseline, "ecus": ecus}
        self.ok("POST", "/api/v1/vehicles", json=body)
        key, csr = make_csr(vin)
        issued = self.ok(
            "POST", f"/api/v1/vehicles/{vin}/certificates", json={"csr_pem": csr.decode()}
        )
        cert_path = self.files / f"{vin}.pem"
        key_path = self.files / f"{vin}.key"
        cert_path.write_text(issued["cert_pem"])
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        key_path.chmod(0o600)
        return Car(vin, cert_path, key_path, issued["serial"], signers)

    def campaign(self, name: str, car: Car, packages: list[str], **extra: Any) -> None:
        """Create and start a campaign for just this vehicle."""
        spec = {"name": name, "targeting": {"vins": [car.vin]}, "packages": packages, **extra}
        self.ok("POST", "/api/v1/campaigns", json=spec)
        self.ok("POST", f"/api/v1/campaigns/{name}/start")

    def revoke(self, car: Car) -> None:
        self.ok(
            "POST", f"/api/v1/pki/certificates/{car.cert_serial}/revoke", json={"reason": "stolen"}
        )


@contextmanager
def running_backend(tmp: Path) -> Iterator[Backend]:
    """A migrated SQLite database, TLS files, the server process, the model and two packages."""
    with serving_backend(prepare_sqlite_server(tmp), tmp) as backend:
        yield backend


def prepare_sqlite_server(tmp: Path) -> ServerFiles:
    """A migrated SQLite database ``tmp/cloud.db`` and the TLS files and config to serve it."""
    database_url = f"sqlite:///{tmp / 'cloud.db'}"
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    engine.dispose()
    return prepare_tls_server(tmp, database_url, token_digest(ADMIN_TOKEN))


@contextmanager
def serving_backend(files: ServerFiles, tmp: Path) -> Iterator[Backend]:
    """``serve`` on prepared files, with the test model and :data:`IMAGES` uploaded."""
    with (
        serving(files.config, files.ca_file) as server,
        httpx.Client(
            base_url=server.url,
            verify=ssl.create_default_context(cafile=str(files.ca_file)),
            headers=ADMIN,
        ) as admin,
    ):
        backend = Backend(server.url, files.ca_file, tmp, admin)
        backend.ok("POST", "/api/v1/models", json=MODEL)
        for target, (hardware_id, data) in IMAGES.items():
            backend.ok(
                "PUT",
                f"/api/v1/packages/{target.replace('-', '/')}",
                params={"hardware_id": hardware_id, "release_counter": 2},
                content=data,
            )
        yield backend
