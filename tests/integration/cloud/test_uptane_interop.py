"""The vehicle side's own Uptane Primary verifies and downloads from the real server.

This is the contract test between the backend and ``redstone_agent.uptane``:
offline-signed image repository uploaded, director metadata generated per
vehicle, tuf.ngclient fetching both over mTLS, full verification with the
cross-check, resumable downloads by consistent-snapshot name, and the signed
manifest closing the campaign.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import requests

from redstone_agent.uptane.keys import generate_signer, public_key_to_dict
from redstone_agent.uptane.manifests import EcuManifest, sign_ecu_manifest, sign_vehicle_manifest
from redstone_agent.uptane.primary import PrimaryConfig, PrimaryVerifier
from redstone_agent.uptane.repository import Repository, RoleKeys
from redstone_agent.uptane.targetinfo import ImageFields
from redstone_agent.uptane.verifier import EcuState, TrustedRoots
from redstone_cloud import pki as certs
from redstone_cloud.backend import open_backend
from redstone_cloud.db.engine import transaction
from redstone_cloud.services import campaigns, imagerepo, inventory, packages, pki
from tests.integration.cloud.fleet import MODEL, make_csr, publication_order, vin_of
from tests.integration.cloud.server import prepare_tls_server, serving

pytestmark = pytest.mark.slow

IMAGES = {"tbox-2.0": ("tbox-hw", b"tbox image " * 5000), "adas-2.0": ("adas-hw", b"adas " * 9000)}


def test_primary_verifies_and_downloads_from_the_backend(database_url: str, tmp_path: Path) -> None:
    files = prepare_tls_server(tmp_path, database_url)
    config, settings = files.config, files.settings
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
    vin = vin_of(1)
    ecu_keys = {f"{vin}-{e['role']}": generate_signer() for e in MODEL["ecus"]}
    backend = open_backend(settings)
    with transaction(backend.sessions) as session:
        for name in publication_order(signed):
            imagerepo.upload(session, "t", name, signed[name])
        for target, (hardware_id, data) in IMAGES.items():
            name, version = target.split("-")
            spec = packages.PackageSpec(name, version, (hardware_id,), release_counter=2)
            packages.upload(session, backend.store, "t", spec, io.BytesIO(data), max_bytes=2**20)
        slots = [inventory.EcuSlot(**e) for e in MODEL["ecus"]]  # type: ignore[arg-type]
        inventory.create_model(session, "t", "sedan", "", slots)
        ecus = [
            inventory.EcuSpec(
                serial,
                e["hardware_id"],
                public_key_to_dict(ecu_keys[serial].public_key),
                e["kind"] == "primary",
            )
            for serial, e in zip(ecu_keys, MODEL["ecus"], strict=True)
        ]
        inventory.register_vehicle(session, "t", vin, "sedan", ecus)
        device_key, csr = make_csr()
        (tmp_path / "v.pem").write_text(
            pki.issue(session, settings.key_dir, "t", vin, csr).cert_pem
        )
        (tmp_path / "v.key").write_bytes(certs.key_to_pem(device_key))  # type: ignore[arg-type]
        spec = campaigns.CampaignSpec("c", campaigns.Targeting(vins=(vin,)), tuple(IMAGES))
        campaigns.create(session, "t", spec)
        campaigns.start(session, "t", "c")
    backend.close()

    with serving(config, tmp_path / "ca.pem") as server, requests.Session() as http:
        http.cert = (str(tmp_path / "v.pem"), str(tmp_path / "v.key"))
        http.verify = str(tmp_path / "ca.pem")
        http.trust_env = False  # else $REQUESTS_CA_BUNDLE silently replaces http.verify
        update = http.get(f"{server.url}/api/v1/device/poll").json()["update"]
        assert update["campaign"] == "c"
        director_root = http.get(f"{server.url}/uptane/director/{vin}/1.root.json").content
        verifier = PrimaryVerifier(
            PrimaryConfig(
                director_url=f"{server.url}/uptane/director/{vin}/",
                image_url=f"{server.url}/uptane/image/",
                image_targets_url=f"{server.url}/api/v1/device/targets/",
                cache_dir=tmp_path / "cache",
            ),
            TrustedRoots(director_root, signed["1.root.json"]),
            session=http,
        )
        hardware = {f"{vin}-{e['role']}": e["hardware_id"] for e in MODEL["ecus"]}
        result = verifier.refresh({s: EcuState(hw, 0) for s, hw in hardware.items()})
        assert {s: t.filename for s, t in result.targets.items()} == {
            f"{vin}-tbox": "tbox-2.0",
            f"{vin}-adas": "adas-2.0",
        }
        installed = {}
        for serial, target in result.targets.items():
            path = verifier.download(target, tmp_path / f"{serial}.img")
            assert path.read_bytes() == IMAGES[target.filename][1]
            installed[serial] = target
        nonce = http.post(f"{server.url}/api/v1/device/nonce").json()["nonce"]
        envelopes = {}
        for serial, signer in ecu_keys.items():
            target = installed.get(serial)
            report = (
                EcuManifest(serial, target.filename, target.length, target.sha256, 2, nonce=nonce)
                if target
                else EcuManifest(serial, "factory.img", 1, "0" * 64, 0, nonce=nonce)
            )
            envelopes[serial] = sign_ecu_manifest(report, signer)
        primary = f"{vin}-tbox"
        manifest = sign_vehicle_manifest(vin, primary, nonce, envelopes, ecu_keys[primary])
        answer = http.post(f"{server.url}/api/v1/device/manifest", data=manifest)
        assert answer.status_code == 200, answer.text
        assert answer.json()["assignment"] == "succeeded"
    backend = open_backend(settings)
    with backend.sessions() as session:
        assert campaigns.status(session, "c")["state"] == "completed"
    backend.close()
