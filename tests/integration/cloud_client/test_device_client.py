"""The device client against a real ``redstone-cloud serve`` over mutual TLS.

Everything the vehicle does goes through ``DeviceClient`` with certificate
files issued by the backend's PKI; the test only uses the admin API to set
the scene (register, campaign, revoke).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from redstone_agent.cloud import (
    CloudAuthRejected,
    CloudConfig,
    CloudConflict,
    CloudRejected,
    CloudTlsError,
    CloudUnavailable,
    DeviceClient,
)
from redstone_agent.retry import RetryPolicy
from redstone_agent.uptane.keys import generate_signer
from redstone_agent.uptane.manifests import EcuManifest, sign_ecu_manifest, sign_vehicle_manifest
from redstone_agent.uptane.primary import PrimaryConfig, PrimaryVerifier
from redstone_agent.uptane.repository import Repository, RoleKeys
from redstone_agent.uptane.targetinfo import ImageFields
from redstone_agent.uptane.verifier import EcuState, TrustedRoots
from redstone_cloud import pki as certs
from tests.integration.cloud.fleet import MODEL, publication_order
from tests.integration.cloud_client.backend import IMAGES, Backend, Car

NO_RETRY = RetryPolicy(attempts=1)


def client_for(backend: Backend, car: Car, **overrides: object) -> DeviceClient:
    values: dict[str, object] = {
        "url": backend.url,
        "vin": car.vin,
        "cert": car.cert,
        "key": car.key,
        "ca": backend.ca,
        "timeout": 10.0,
    }
    values.update(overrides)
    return DeviceClient(CloudConfig(**values), retry=NO_RETRY)  # type: ignore[arg-type]


def signed_manifest(car: Car, nonce: str, installed: dict[str, tuple[str, int, str, int]]) -> bytes:
    """What the Master sends: every ECU's signed report inside the primary's envelope."""
    envelopes = {}
    for serial, signer in car.signers.items():
        name, length, sha256, counter = installed.get(
            serial, ("factory.img", 7, hashlib.sha256(b"factory").hexdigest(), 0)
        )
        report = EcuManifest(serial, name, length, sha256, counter, nonce=nonce)
        envelopes[serial] = sign_ecu_manifest(report, signer)
    return sign_vehicle_manifest(car.vin, car.primary, nonce, envelopes, car.signers[car.primary])


def test_poll_sees_nothing_then_the_offer_then_304(backend: Backend) -> None:
    car = backend.register(1)
    with client_for(backend, car) as client:
        first = client.poll()
        assert (first.update, first.changed) == (None, True)
        assert first.poll_interval_s == 300
        again = client.poll()
        assert (again.update, again.changed) == (None, False)

        backend.campaign("spring", car, ["tbox-2.0", "adas-2.0"], consent_required=True)
        offered = client.poll()
        assert offered.changed
        assert offered.update is not None
        assert (offered.update.campaign, offered.update.state) == ("spring", "offered")
        assert offered.update.consent_required
        images = offered.update.ecus
        assert {serial: i.target for serial, i in images.items()} == {
            f"{car.vin}-tbox": "tbox-2.0",
            f"{car.vin}-adas": "adas-2.0",
        }
        data = IMAGES["tbox-2.0"][1]
        tbox = images[f"{car.vin}-tbox"]
        assert (tbox.length, tbox.sha256, tbox.release_counter) == (
            len(data),
            hashlib.sha256(data).hexdigest(),
            2,
        )
        cached = client.poll()
        assert cached.changed is False
        assert cached.update == offered.update

        # The URLs handed to the Uptane Primary are served to this identity.
        root = client.session.get(client.director_url + "root.json", timeout=10)
        assert root.status_code == 200
        target = client.session.get(client.targets_url + tbox.target, timeout=10)
        assert target.content == data


def test_nonce_manifest_replay_events_and_logs(backend: Backend) -> None:
    car = backend.register(2)
    backend.campaign("summer", car, ["adas-2.0"])
    with client_for(backend, car) as client:
        offer = client.poll().update
        assert offer is not None
        client.event("download_started", offer.campaign, detail={"bytes": 0})
        client.event(
            "install_started", offer.campaign, ecu_serial=f"{car.vin}-adas", detail={"slot": "B"}
        )
        assert client.poll().update.state == "installing"  # type: ignore[union-attr]

        nonce = client.nonce()
        assert len(nonce) == 32
        image = offer.ecus[f"{car.vin}-adas"]
        installed = {
            f"{car.vin}-adas": (image.target, image.length, image.sha256, image.release_counter)
        }
        manifest = signed_manifest(car, nonce, installed)
        ack = client.post_manifest(manifest)
        assert ack.accepted
        assert set(ack.changed_ecus) == set(car.signers)
        assert ack.assignment == "succeeded"

        with pytest.raises(CloudConflict) as replay:
            client.post_manifest(manifest)
        assert str(replay.value) == (
            "POST /api/v1/device/manifest refused (HTTP 409): "
            "manifest nonce was already used: replayed manifest rejected"
        )
        never_issued = signed_manifest(car, "f" * 32, installed)
        with pytest.raises(CloudConflict, match="not issued to this vehicle"):
            client.post_manifest(never_issued)

        log_id = client.upload_log("summer", "adas-sub", "installed adas-2.0\nhealth: ok\n")
        assert log_id > 0
        assert client.upload_log(None, "master", "idle") > log_id
    logs = backend.ok("GET", "/api/v1/logs", params={"vin": car.vin})
    assert {row["text"] for row in logs} == {"installed adas-2.0\nhealth: ok\n", "idle"}
    audit = backend.ok("GET", "/api/v1/audit", params={"actor": f"vehicle:{car.vin}"})
    assert {"device.download_started", "device.install_started"} <= {a["action"] for a in audit}


def test_bad_requests_are_one_line_rejections(backend: Backend) -> None:
    car = backend.register(3)
    with client_for(backend, car) as client:
        with pytest.raises(CloudRejected) as bad:
            client.post_manifest(b"{not json")
        assert bad.value.status == 422
        assert str(bad.value).startswith("POST /api/v1/device/manifest refused (HTTP 422): ")
        assert "\n" not in str(bad.value)
        with pytest.raises(CloudRejected) as big:
            client.upload_log(None, "master", "x" * 2_000_000)
        assert big.value.status == 413


def test_revoked_certificate_is_one_clear_line(backend: Backend) -> None:
    car = backend.register(4)
    with client_for(backend, car) as client:
        client.poll()
        backend.revoke(car)
        with pytest.raises(CloudAuthRejected) as refused:
            client.poll()
    assert str(refused.value) == (
        "GET /api/v1/device/poll refused (HTTP 403): client certificate has been revoked"
    )


def test_wrong_ca_is_a_clear_tls_error(backend: Backend, tmp_path: Path) -> None:
    car = backend.register(5)
    other = tmp_path / "other-ca.pem"
    other.write_text(certs.cert_pem(certs.create_root_ca("elsewhere", certs.new_ca_key())))
    with client_for(backend, car, ca=other) as client, pytest.raises(CloudTlsError) as failed:
        client.poll()
    message = str(failed.value)
    assert message == (
        f"GET /api/v1/device/poll: TLS with {backend.url} failed: "
        "certificate verify failed: self-signed certificate in certificate chain"
    )


def test_missing_certificate_file_is_named(backend: Backend, tmp_path: Path) -> None:
    car = backend.register(6)
    with pytest.raises(CloudTlsError, match=r"^client certificate .*/gone\.pem: no such file$"):
        client_for(backend, car, cert=tmp_path / "gone.pem")


def test_unreachable_server_is_transient_and_retried(backend: Backend) -> None:
    car = backend.register(7)
    pauses: list[float] = []
    config = CloudConfig(
        url="https://127.0.0.1:9", vin=car.vin, cert=car.cert, key=car.key, ca=backend.ca
    )
    retry = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.01)
    with (
        DeviceClient(config, retry=retry, sleep=pauses.append) as client,
        pytest.raises(CloudUnavailable) as down,
    ):
        client.poll()
    assert len(pauses) == 2
    assert down.value.status is None
    assert str(down.value) == (
        "GET /api/v1/device/poll: cannot reach https://127.0.0.1:9: Connection refused"
    )


def test_the_uptane_primary_verifies_through_the_clients_session(
    backend: Backend, tmp_path: Path
) -> None:
    """The Master hands ``client.session`` and the three URLs to the Primary: metadata and
    targets then travel under the vehicle's certificate, as polls do."""
    image_repo = Repository.create(
        "image",
        {
            role: RoleKeys([generate_signer()])
            for role in ("root", "targets", "snapshot", "timestamp")
        },
    )
    for target, (hardware_id, data) in IMAGES.items():
        image_repo.add_image(target, data, ImageFields((hardware_id,), 2))
    image_repo.commit()
    signed = image_repo.files()
    for name in publication_order(signed):
        backend.ok("PUT", f"/api/v1/image-repo/{name}", content=signed[name])
    car = backend.register(8)
    backend.campaign("autumn", car, list(IMAGES))
    with client_for(backend, car) as client:
        assert client.poll().update is not None  # the first poll in the window publishes the offer
        director_root = client.session.get(client.director_url + "1.root.json", timeout=10)
        verifier = PrimaryVerifier(
            PrimaryConfig(
                director_url=client.director_url,
                image_url=client.image_url,
                image_targets_url=client.targets_url,
                cache_dir=tmp_path / "cache",
            ),
            TrustedRoots(director_root.content, signed["1.root.json"]),
            session=client.session,
        )
        hardware = {f"{car.vin}-{e['role']}": e["hardware_id"] for e in MODEL["ecus"]}
        result = verifier.refresh({s: EcuState(hw, 0) for s, hw in hardware.items()})
        assert {s: t.filename for s, t in result.targets.items()} == {
            f"{car.vin}-tbox": "tbox-2.0",
            f"{car.vin}-adas": "adas-2.0",
        }
        target = result.targets[f"{car.vin}-adas"]
        path = verifier.download(target, tmp_path / "adas.img")
        assert path.read_bytes() == IMAGES["adas-2.0"][1]
