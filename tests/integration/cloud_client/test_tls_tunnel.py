"""The Master's TLS client key on a PKCS#11 token, through a TLS tunnel (docs/keys.md §8).

Python's ``ssl`` loads client keys from files only, so the key stays on a (SoftHSM2)
token and ``stunnel`` does the mutual TLS with it through OpenSSL's ``pkcs11`` engine
(libp11); the device client speaks HTTP to the tunnel on loopback. The backend sees
the token's certificate: polls and a signed manifest go through as that vehicle.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from redstone_agent.cloud import CloudConfig, DeviceClient, PollResult
from redstone_agent.cloud.errors import CloudAuthRejected, CloudUnavailable
from redstone_agent.master.certificate import Certificate, Tunnel
from redstone_agent.pkcs11 import token, uri
from redstone_agent.pkcs11.eckey import TokenEcPrivateKey
from redstone_agent.retry import RetryPolicy
from tests.integration.cloud_client.backend import Backend
from tests.integration.cloud_client.test_device_client import signed_manifest
from tests.softhsm import MODULE, PIN, SoftHsm
from tests.support import require_tool


def engine() -> Path:
    """Where OpenSSL looks for engines, and libp11's ``pkcs11`` engine there."""
    shown = subprocess.run(
        [require_tool("openssl"), "version", "-e"], capture_output=True, text=True, check=True
    ).stdout
    return Path(shown.split('"')[1]) / "pkcs11.so"


GUARD_S = 20.0
"""Failure guard only: the tunnel listens within a fraction of a second."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def tunnel(conf: Path, port: int, env: dict[str, str], log: Path) -> Iterator[int]:
    """A running stunnel (its pid) listening on ``port``."""
    proc = subprocess.Popen(
        [require_tool("stunnel"), str(conf)],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + GUARD_S
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = log.read_text()[-800:]
                    raise AssertionError(f"stunnel did not listen: {tail}") from None
                time.sleep(0.05)
        yield proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


def poll_once_reloaded(client: DeviceClient) -> PollResult:
    """Poll until the tunnel has re-read its configuration (it does so on SIGHUP, in its
    own time); before that, its connections still present the revoked certificate, and
    a connection caught in the reload is reset (the Master's retry policy rides that)."""
    deadline = time.monotonic() + GUARD_S
    while True:
        try:
            return client.poll()
        except (CloudAuthRejected, CloudUnavailable):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_the_device_client_speaks_mtls_through_a_tunnel_holding_a_token_key(
    backend: Backend, softhsm: SoftHsm, tmp_path: Path
) -> None:
    if not engine().exists():
        pytest.skip(f"{engine()} missing: install libengine-pkcs11-openssl")
    where = softhsm.uri("tbox-tls", "tbox-tls")
    key = TokenEcPrivateKey(token.generate(uri.parse(where)))
    car = backend.register(61)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, car.vin)]))
        .sign(key, hashes.SHA256())  # signed on the token: it holds the only copy
        .public_bytes(serialization.Encoding.PEM)
    )
    issued = backend.ok(
        "POST", f"/api/v1/vehicles/{car.vin}/certificates", json={"csr_pem": csr.decode()}
    )
    (tmp_path / "tbox-tls.pem").write_text(issued["cert_pem"])
    server = urlsplit(backend.url)
    port = free_port()
    conf = tmp_path / "tunnel.conf"
    conf.write_text(
        "foreground = yes\n"
        "pid =\n"
        "engine = pkcs11\n"
        f"engineCtrl = MODULE_PATH:{MODULE}\n"
        f"engineCtrl = PIN:{PIN}\n"
        "[cloud]\n"
        "client = yes\n"
        f"accept = 127.0.0.1:{port}\n"
        f"connect = {server.hostname}:{server.port}\n"
        f"CAfile = {backend.ca}\n"
        "verifyChain = yes\n"
        f"checkIP = {server.hostname}\n"
        f"cert = {tmp_path / 'tbox-tls.pem'}\n"
        "engineId = pkcs11\n"
        "key = pkcs11:token=tbox-tls;object=tbox-tls;type=private\n"
    )
    conf.chmod(0o600)  # it holds the PIN
    config = CloudConfig(url=f"http://127.0.0.1:{port}", vin=car.vin)
    tls_cert = tmp_path / "tbox-tls.pem"
    with (
        tunnel(conf, port, softhsm.env(), tmp_path / "tunnel.log") as pid,
        DeviceClient(config, retry=RetryPolicy(attempts=1)) as client,
    ):
        assert client.poll().update is None  # the backend took the token's certificate
        nonce = client.nonce()
        assert client.post_manifest(signed_manifest(car, nonce, {})).accepted

        # 810 days on, 15 of its 825 are left: the Master renews the tunnel's certificate
        # for the same token key and has the tunnel reload it.
        old = x509.load_pem_x509_certificate(tls_cert.read_bytes())
        renewing = Certificate(
            config,
            None,
            30,
            clock=lambda: dt.datetime.now(dt.UTC) + dt.timedelta(days=810),
            tunnel=Tunnel(tls_cert, where, ("kill", "-HUP", str(pid))),
        )
        asyncio.run(renewing.renew_if_due(client))
        new = x509.load_pem_x509_certificate(tls_cert.read_bytes())
        assert new.serial_number != old.serial_number
        assert new.public_key() == old.public_key() == key.public_key()
        # With the old certificate revoked, only the reloaded tunnel still gets through.
        backend.ok(
            "POST",
            f"/api/v1/pki/certificates/{old.serial_number:x}/revoke",
            json={"reason": "renewed"},
        )
        client.forget_poll()
        assert poll_once_reloaded(client).update is None
    key.token_key.close()
