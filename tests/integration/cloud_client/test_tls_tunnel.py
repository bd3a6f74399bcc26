"""The Master's TLS client key on a PKCS#11 token, through a TLS tunnel (docs/keys.md §8).

Python's ``ssl`` loads client keys from files only, so the key stays on a (SoftHSM2)
token and ``stunnel`` does the mutual TLS with it through OpenSSL's ``pkcs11`` engine
(libp11); the device client speaks HTTP to the tunnel on loopback. The backend sees
the token's certificate: polls and a signed manifest go through as that vehicle.
"""

from __future__ import annotations

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

from redstone_agent.cloud import CloudConfig, DeviceClient
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
def tunnel(conf: Path, port: int, env: dict[str, str], log: Path) -> Iterator[None]:
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
        yield
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_device_client_speaks_mtls_through_a_tunnel_holding_a_token_key(
    backend: Backend, softhsm: SoftHsm, tmp_path: Path
) -> None:
    if not engine().exists():
        pytest.skip(f"{engine()} missing: install libengine-pkcs11-openssl")
    where = softhsm.uri("spare", "tbox-tls")
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
        "key = pkcs11:token=spare;object=tbox-tls;type=private\n"
    )
    conf.chmod(0o600)  # it holds the PIN
    config = CloudConfig(url=f"http://127.0.0.1:{port}", vin=car.vin)
    with (
        tunnel(conf, port, softhsm.env(), tmp_path / "tunnel.log"),
        DeviceClient(config, retry=RetryPolicy(attempts=1)) as client,
    ):
        assert client.poll().update is None  # the backend took the token's certificate
        nonce = client.nonce()
        assert client.post_manifest(signed_manifest(car, nonce, {})).accepted
    key.token_key.close()
