"""The vehicle's side of EST against a real ``redstone-cloud serve`` over TLS: enrol with
a one-time token, poll with the new pair, renew over it, and be refused once revoked;
the Master enrols at start from its token file and renews when due."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from pathlib import Path

import pytest
from cryptography import x509

from redstone_agent.cloud import CloudConfig, DeviceClient
from redstone_agent.cloud.client import enroll
from redstone_agent.cloud.errors import CloudAuthRejected
from redstone_agent.master.certificate import Certificate, EnrolmentError
from redstone_agent.retry import RetryPolicy
from tests.integration.cloud_client.backend import Backend

NO_RETRY = RetryPolicy(attempts=1)
LATER = dt.timedelta(days=810)
"""The backend issues for 825 days: 810 days on, 15 are left."""


def token(backend: Backend, vin: str) -> str:
    return str(backend.ok("POST", f"/api/v1/vehicles/{vin}/enrollment-tokens", json={})["token"])


def tbox_files(backend: Backend, vin: str, tmp_path: Path) -> CloudConfig:
    """Where a TBox keeps its pair (nothing there yet) and how it reaches the backend."""
    return CloudConfig(
        url=backend.url,
        vin=vin,
        cert=tmp_path / "tbox.pem",
        key=tmp_path / "tbox.key",
        ca=backend.ca,
    )


def serial(cert: Path) -> str:
    return format(x509.load_pem_x509_certificate(cert.read_bytes()).serial_number, "x")


def test_enrol_poll_renew_and_a_revoked_pair_cannot_renew(backend: Backend, tmp_path: Path) -> None:
    car = backend.register(41)
    config = tbox_files(backend, car.vin, tmp_path)
    first = enroll(config, token(backend, car.vin))
    assert serial(config.cert) == first  # type: ignore[arg-type]
    assert (tmp_path / "tbox.key").stat().st_mode & 0o077 == 0
    with DeviceClient(config, retry=NO_RETRY) as client:
        assert client.poll().update is None  # accepted: the backend knows the pair
        second = client.renew_certificate()
        assert second != first and serial(config.cert) == second  # type: ignore[arg-type]
        assert client.poll().update is None  # a new connection, the new pair
        backend.ok("POST", f"/api/v1/pki/certificates/{second}/revoke", json={"reason": "stolen"})
        kept = config.cert.read_bytes()  # type: ignore[union-attr]
        with pytest.raises(CloudAuthRejected) as refused:
            client.renew_certificate()
    assert "revoked" in str(refused.value) and "\n" not in str(refused.value)
    assert config.cert.read_bytes() == kept  # type: ignore[union-attr]
    assert not list(tmp_path.glob("*.next"))


def test_the_master_enrols_from_its_token_file_then_renews_when_due(
    backend: Backend, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    car = backend.register(42)
    config = tbox_files(backend, car.vin, tmp_path)
    wrong = tmp_path / "wrong.token"
    wrong.write_text("not-a-token\n")
    with pytest.raises(EnrolmentError, match="not recognised for this VIN") as failed:
        Certificate(config, wrong, 30).prepare()
    assert "\n" not in str(failed.value) and not config.cert.exists()  # type: ignore[union-attr]

    token_file = tmp_path / "enroll.token"
    token_file.write_text(token(backend, car.vin) + "\n")
    certificate = Certificate(config, token_file, before_days=30)
    certificate.prepare()
    enrolled = serial(config.cert)  # type: ignore[arg-type]
    assert not token_file.exists()  # used once, then gone
    certificate.prepare()  # a certificate is there: nothing to do
    assert serial(config.cert) == enrolled  # type: ignore[arg-type]

    with DeviceClient(config, retry=NO_RETRY) as client:
        asyncio.run(certificate.renew_if_due(client))  # 825 days left: not due
        assert serial(config.cert) == enrolled  # type: ignore[arg-type]
        later = Certificate(config, None, 30, clock=lambda: dt.datetime.now(dt.UTC) + LATER)
        with caplog.at_level(logging.INFO):
            asyncio.run(later.renew_if_due(client))  # 15 days left then: due
        renewed = serial(config.cert)  # type: ignore[arg-type]
        assert renewed != enrolled
        assert f"renewed the client certificate over EST: now {renewed}" in caplog.text
        assert client.poll().update is None  # accepted: the backend knows the pair
