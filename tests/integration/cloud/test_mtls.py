"""The real server process with TLS: client certificate -> vehicle, revocation, foreign CAs."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from redstone_cloud import pki as certs
from redstone_cloud.backend import open_backend
from redstone_cloud.db.engine import make_engine, transaction
from redstone_cloud.services import pki
from redstone_cloud.settings import Settings
from tests.integration.cloud.fleet import add_model, add_vehicle, make_csr, vin_of
from tests.integration.cloud.server import prepare_tls_server, serving

pytestmark = pytest.mark.slow


def drop_connections(settings: Settings) -> None:
    """Terminate every other session on the cloud's PostgreSQL database."""
    engine = make_engine(settings.database_url)
    with engine.connect() as conn:
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND datname = current_database()"
            )
        )
        conn.commit()
    engine.dispose()


def test_mtls_maps_certificates_to_vehicles(database_url: str, tmp_path: Path) -> None:
    files = prepare_tls_server(tmp_path, database_url)
    config, settings = files.config, files.settings
    backend = open_backend(settings)
    key_dir = settings.key_dir
    with transaction(backend.sessions) as session:
        pki.create_ca(session, key_dir, "test", "devices", parent="root")
        add_model(session)
        clients = {}
        for n in (1, 2):
            row, device_key = add_vehicle(session, key_dir, n)
            (tmp_path / f"v{n}.pem").write_text(row.cert_pem)
            (tmp_path / f"v{n}.key").write_bytes(certs.key_to_pem(device_key))
            clients[n] = row.serial
    backend.close()
    foreign_key = certs.new_ca_key()
    foreign_ca = certs.create_root_ca("foreign", foreign_key)
    foreign_device_key, csr = make_csr()
    (tmp_path / "foreign.key").write_bytes(certs.key_to_pem(foreign_device_key))
    foreign = certs.issue_device_certificate(
        certs.load_csr(csr), vin_of(1), foreign_ca, foreign_key
    )
    (tmp_path / "foreign.pem").write_text(certs.cert_pem(foreign))

    def context(name: str | None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        if name:
            ctx.load_cert_chain(tmp_path / f"{name}.pem", tmp_path / f"{name}.key")
        return ctx

    with serving(config, tmp_path / "ca.pem") as server:
        url = server.url
        with httpx.Client(verify=context("v1")) as car:
            first = car.get(f"{url}/api/v1/device/poll")
            assert first.status_code == 200, first.text
            assert first.json()["vin"] == vin_of(1)
            cached = car.get(
                f"{url}/api/v1/device/poll", headers={"If-None-Match": first.headers["etag"]}
            )
            assert cached.status_code == 304
            fast = car.get(f"{url}/api/v1/device/poll")
            assert (fast.status_code, fast.content) == (200, first.content)
            assert fast.headers["etag"] == first.headers["etag"]
            if database_url.startswith("postgresql"):
                # The database drops every connection (a restart, a failover): the fast
                # path's held connection fails, the poll falls through to the full
                # route, and the next one reconnects.
                drop_connections(settings)
                for _ in range(2):
                    again = car.get(
                        f"{url}/api/v1/device/poll",
                        headers={"If-None-Match": first.headers["etag"]},
                    )
                    assert again.status_code == 304
            own = car.get(f"{url}/uptane/director/{vin_of(1)}/root.json")
            assert own.status_code == 200
            assert car.get(f"{url}/uptane/director/{vin_of(2)}/root.json").status_code == 403
        with httpx.Client(verify=context("v2")) as other:
            assert other.get(f"{url}/api/v1/device/poll").json()["vin"] == vin_of(2)
        with httpx.Client(verify=context(None)) as anonymous:
            assert anonymous.get(f"{url}/api/v1/device/poll").status_code == 401
            assert anonymous.get(f"{url}/healthz").status_code == 200
        with pytest.raises(httpx.HTTPError), httpx.Client(verify=context("foreign")) as forged:
            forged.get(f"{url}/api/v1/device/poll")
        admin = open_backend(settings)
        with transaction(admin.sessions) as session:
            # As openssl prints it: upper case, padded to whole bytes (a serial with a
            # leading zero nibble once failed to match, one time in 16).
            printed = f"{int(clients[1], 16):X}".rjust(40, "0")
            pki.revoke(session, "test", printed, "stolen")
        admin.close()
        with httpx.Client(verify=context("v1")) as car:
            refused = car.get(f"{url}/api/v1/device/poll")
            assert refused.status_code == 403
            assert refused.json() == {"error": "client certificate has been revoked"}
