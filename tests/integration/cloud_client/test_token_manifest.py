"""ECU manifest keys on a PKCS#11 token (a real SoftHSM2 token): the key files the Master
and the Subs read (``ecu-key``) hold only a URI, and the backend accepts the vehicle
manifest those token keys sign, as it does file keys' (docs/keys.md)."""

from __future__ import annotations

from pathlib import Path

from redstone_agent.cloud import CloudConfig, DeviceClient
from redstone_agent.pkcs11 import token, uri
from redstone_agent.retry import RetryPolicy
from redstone_agent.uptane.keys import load_signer
from tests.integration.cloud.fleet import MODEL
from tests.integration.cloud_client.backend import Backend
from tests.integration.cloud_client.test_device_client import signed_manifest
from tests.softhsm import SoftHsm


def test_a_manifest_signed_by_token_held_ecu_keys_is_accepted(
    backend: Backend, softhsm: SoftHsm, tmp_path: Path
) -> None:
    signers = {}
    for ecu in MODEL["ecus"]:
        role = str(ecu["role"])
        where = softhsm.uri("spare", f"ecu-{role}")
        token.generate(uri.parse(where)).close()
        key_file = tmp_path / f"{role}.key"
        key_file.write_text(where + "\n")
        key_file.chmod(0o600)
        signers[role] = load_signer(key_file)  # what [master] / [sub] ecu-key loads
        assert "PRIVATE KEY" not in key_file.read_text()
    car = backend.register(51, signers)
    config = CloudConfig(url=backend.url, vin=car.vin, cert=car.cert, key=car.key, ca=backend.ca)
    with DeviceClient(config, retry=RetryPolicy(attempts=1)) as client:
        nonce = client.nonce()
        ack = client.post_manifest(signed_manifest(car, nonce, {}))
    assert ack.accepted
