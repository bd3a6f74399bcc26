"""A real ``redstone-cloud serve`` with a small fleet, built only through its public ways in:
the admin API, the device API over mutual TLS, and the ``redstone-cloud`` CLI.

The fleet (VIN -> what it did):

* ``RSTEST00000000001``: on baseline ``spring``, reports tbox-2.0 and adas-2.0 (up to date);
* ``RSTEST00000000002``: on ``spring``, reports factory images (out of date);
* ``RSTEST00000000003``: on ``spring``, never reported (silent);
* ``RSTEST00000000004``: no baseline, a campaign whose install failed (failing), and a log
  and an event carrying a ``<script>`` (they must show as text).
"""

from __future__ import annotations

import hashlib
import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from redstone_agent.uptane.keys import Signer
from redstone_agent.uptane.manifests import EcuManifest, sign_ecu_manifest, sign_vehicle_manifest
from tests.integration.cloud.fleet import ADMIN, MODEL, vin_of
from tests.integration.cloud.server import serving
from tests.integration.cloud_client.backend import IMAGES, Backend, prepare_sqlite_server

PASSWORD = "console-test-password"
USERS = {"ada": "admin", "rita": "release-manager", "vic": "viewer", "tom": "viewer"}
"""Console users made with ``redstone-cloud user add``; all share :data:`PASSWORD`."""

MAX_FAILURES = 3
"""``login_max_failures`` of the test server (per user name)."""

XSS = '<script>window.__xss = 1; alert("xss")</script><img src="x" onerror="window.__xss = 2">'
FACTORY = ("factory.img", 1, hashlib.sha256(b"factory").hexdigest(), 0)


@dataclass
class Car:
    vin: str
    client: httpx.Client
    """Speaks the device API with this vehicle's certificate."""
    signers: dict[str, Signer]
    installed: dict[str, tuple[str, int, str, int]] = field(default_factory=dict)

    def manifest(self) -> None:
        nonce = self.client.post("/api/v1/device/nonce").json()["nonce"]
        envelopes = {}
        for serial, signer in self.signers.items():
            filename, length, sha256, counter = self.installed.get(serial, FACTORY)
            report = EcuManifest(serial, filename, length, sha256, counter, nonce=nonce)
            envelopes[serial] = sign_ecu_manifest(report, signer)
        primary = next(iter(self.signers))
        body = sign_vehicle_manifest(self.vin, primary, nonce, envelopes, self.signers[primary])
        response = self.client.post("/api/v1/device/manifest", content=body)
        assert response.status_code == 200, response.text


@dataclass
class World:
    url: str
    config: Path
    database: Path
    admin: httpx.Client
    cars: dict[str, Car]

    def cli(self, *argv: str, stdin: str = "") -> str:
        """``redstone-cloud --config ... ARGV`` as an operator would run it."""
        done = subprocess.run(
            [sys.executable, "-m", "redstone_cloud", "--config", str(self.config), *argv],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.admin.request(method, path, **kwargs)
        assert response.status_code in (200, 201), (path, response.status_code, response.text)
        return response.json()


def _register(world: World, n: int, files: Path, ca: Path, baseline: str | None) -> Car:
    registered = Backend(world.url, ca, files, world.admin).register(n, baseline=baseline)
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(registered.cert, registered.key)
    client = httpx.Client(base_url=world.url, verify=context, timeout=30)
    return Car(registered.vin, client, registered.signers)


def _populate(world: World, files: Path, ca: Path) -> None:
    world.ok("POST", "/api/v1/models", json=MODEL)
    for target, (hardware_id, data) in IMAGES.items():
        world.ok(
            "PUT",
            f"/api/v1/packages/{target.replace('-', '/')}",
            params={"hardware_id": hardware_id, "release_counter": 2},
            content=data,
        )
    world.ok(
        "POST", "/api/v1/models/sedan/baselines", json={"name": "spring", "targets": sorted(IMAGES)}
    )
    for n in (1, 2, 3, 4):
        car = _register(world, n, files, ca, "spring" if n < 4 else None)
        world.cars[car.vin] = car
    first = world.cars[vin_of(1)]
    for serial in first.signers:
        hardware = serial.rsplit("-", 1)[1]
        target = f"{hardware}-2.0"
        if target in IMAGES:
            data = IMAGES[target][1]
            first.installed[serial] = (target, len(data), hashlib.sha256(data).hexdigest(), 2)
    first.manifest()
    world.cars[vin_of(2)].manifest()
    failing = world.cars[vin_of(4)]
    failing.manifest()
    spec = {"name": "autumn", "targeting": {"vins": [failing.vin]}, "packages": ["tbox-2.0"]}
    world.ok("POST", "/api/v1/campaigns", json=spec)
    world.ok("POST", "/api/v1/campaigns/autumn/start")
    assert failing.client.get("/api/v1/device/poll").json()["update"] is not None
    event = {
        "kind": "install_failed",
        "campaign": "autumn",
        "detail": {"message": f"flash write failed {XSS}"},
    }
    assert failing.client.post("/api/v1/device/events", json=event).status_code == 200
    log = failing.client.post(
        "/api/v1/device/logs", params={"source": "tbox"}, content=f"boot ok\n{XSS}\n".encode()
    )
    assert log.status_code == 201, log.text


@contextmanager
def running_world(tmp: Path) -> Iterator[World]:
    """Start the server, build the fleet and the console users; stop it all afterwards."""
    files = prepare_sqlite_server(tmp)
    database = tmp / "cloud.db"
    with files.config.open("a") as config:
        config.write(
            "[cloud.console]\n"
            f"login_max_failures = {MAX_FAILURES}\n"
            "login_max_failures_per_client = 100\n"
        )
    with (
        serving(files.config, files.ca_file) as server,
        httpx.Client(
            base_url=server.url,
            verify=ssl.create_default_context(cafile=str(files.ca_file)),
            headers=ADMIN,
            timeout=30,
        ) as admin,
    ):
        world = World(server.url, files.config, database, admin, {})
        try:
            _populate(world, tmp, files.ca_file)
            for name, role in USERS.items():
                world.cli("user", "add", name, "--role", role, stdin=PASSWORD + "\n")
            yield world
        finally:
            for car in world.cars.values():
                car.client.close()
