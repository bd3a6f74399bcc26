"""The director's online keys: one per role, rotated by ``director rotate-keys``, followed by
a real Uptane client (python-tuf's ngclient) through the root chain."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tuf.api.exceptions import DownloadHTTPError, UnsignedMetadataError
from tuf.api.metadata import Metadata, Root, Timestamp
from tuf.api.serialization.json import JSONSerializer
from tuf.ngclient import FetcherInterface, Updater

from redstone_agent.uptane.keys import load_signer
from redstone_cloud.api.app import create_app
from redstone_cloud.backend import Backend, open_backend
from redstone_cloud.cli import main
from redstone_cloud.uptane_link import OnlineRepository
from tests.integration.cloud.conftest import make_settings
from tests.integration.cloud.fleet import Fleet, SimVehicle
from tests.softhsm import SoftHsm

ROLES = ("root", "targets", "snapshot", "timestamp")
BASE = "http://testserver"


class DeviceFetcher(FetcherInterface):
    """ngclient's one-method fetcher over the test client, as vehicle ``car``;
    ``swap`` may replace a file's bytes (an attacker between vehicle and backend)."""

    def __init__(
        self, fleet: Fleet, car: SimVehicle, swap: Callable[[str, bytes], bytes] | None = None
    ) -> None:
        self.fleet, self.car, self.swap = fleet, car, swap

    def _fetch(self, url: str) -> Iterator[bytes]:
        answer = self.fleet.device(self.car, "GET", url.removeprefix(BASE))
        if answer.status_code != 200:
            raise DownloadHTTPError(f"{url}: HTTP {answer.status_code}", answer.status_code)
        body = answer.content
        return iter([self.swap(url.rsplit("/", 1)[1], body) if self.swap else body])


def director(
    fleet: Fleet, car: SimVehicle, cache: Path, fetcher: DeviceFetcher | None = None
) -> Updater:
    """The vehicle's director client; trusts ``1.root.json`` on first use, then its cache."""
    cache.mkdir(exist_ok=True)
    bootstrap = None
    if not (cache / "root.json").exists():
        bootstrap = fleet.device(car, "GET", f"/uptane/director/{car.vin}/1.root.json").content
    return Updater(
        str(cache),
        f"{BASE}/uptane/director/{car.vin}/",
        fetcher=fetcher or DeviceFetcher(fleet, car),
        bootstrap=bootstrap,
    )


def trusted_root(cache: Path) -> Root:
    return Metadata[Root].from_bytes((cache / "root.json").read_bytes()).signed


def rotate(backend: Backend, tmp_path: Path, *args: str) -> dict[str, Any]:
    """``redstone-cloud --json director rotate-keys ARGS`` against this backend's data."""
    settings = backend.settings
    config = tmp_path / "cloud.toml"
    config.write_text(
        f"[cloud]\ndatabase_url = {json.dumps(settings.database_url)}\n"
        f"data_dir = {json.dumps(str(settings.data_dir))}\n"
    )
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["--config", str(config), "--json", "director", "rotate-keys", *args]) == 0
    return dict(json.loads(out.getvalue()))


@pytest.fixture
def car(fleet: Fleet) -> SimVehicle:
    fleet.model()
    return fleet.vehicle(1)


def test_director_roles_are_signed_by_different_keys(
    fleet: Fleet, car: SimVehicle, backend: Backend, tmp_path: Path
) -> None:
    updater = director(fleet, car, tmp_path / "director")
    updater.refresh()
    root = trusted_root(tmp_path / "director")
    keyids = {role: root.roles[role].keyids for role in ROLES}
    assert all(len(ids) == 1 for ids in keyids.values())
    assert len({ids[0] for ids in keyids.values()}) == 4, keyids
    files = backend.director_keys.paths
    for role in ROLES:
        assert load_signer(files[role]).public_key.keyid == keyids[role][0]
        assert files[role].stat().st_mode & 0o777 == 0o600
    timestamp = Metadata[Timestamp].from_bytes(
        (tmp_path / "director" / "timestamp.json").read_bytes()
    )
    assert set(timestamp.signatures) == set(keyids["timestamp"])


def test_vehicle_verifies_before_and_after_a_key_rotation(
    fleet: Fleet, car: SimVehicle, backend: Backend, tmp_path: Path
) -> None:
    cache = tmp_path / "director"
    director(fleet, car, cache).refresh()
    before = trusted_root(cache)

    answer = rotate(backend, tmp_path)
    assert set(answer["rotated"]) == set(ROLES)
    assert answer["vehicles_to_follow"] == 1
    retired = sorted(p.name for p in (backend.settings.key_dir / "retired").iterdir())
    assert retired == sorted(f"{r}-{answer['rotated'][r]['old_keyid']}.pem" for r in ROLES)

    director(fleet, car, cache).refresh()  # the vehicle walks 1.root.json -> 2.root.json
    after = trusted_root(cache)
    assert after.version == before.version + 1
    for role in ROLES:
        assert after.roles[role].keyids == [answer["rotated"][role]["new_keyid"]]
    new_root = Metadata[Root].from_bytes((cache / "root.json").read_bytes())
    assert set(new_root.signatures) == {
        answer["rotated"]["root"]["old_keyid"],
        answer["rotated"]["root"]["new_keyid"],
    }, "a new root is signed by the old and the new root keys"
    fresh = tmp_path / "fresh"
    director(fleet, car, fresh).refresh()  # a vehicle that only knows version 1 follows too
    assert trusted_root(fresh).version == after.version

    trail = fleet.ok("GET", "/api/v1/audit", params={"action": "director.rotate_keys"})
    assert trail[0]["actor"].startswith("cli:")
    assert trail[0]["detail"]["timestamp"] == answer["rotated"]["timestamp"]


def test_old_timestamp_key_alone_no_longer_verifies_after_rotation(
    fleet: Fleet, car: SimVehicle, backend: Backend, tmp_path: Path
) -> None:
    cache = tmp_path / "director"
    director(fleet, car, cache).refresh()
    before = trusted_root(cache)
    old_key = load_signer(backend.director_keys.paths["timestamp"])
    rotate(backend, tmp_path, "--role", "timestamp")
    director(fleet, car, cache).refresh()
    after = trusted_root(cache)
    assert after.roles["timestamp"].keyids != [old_key.public_key.keyid]
    assert after.roles["root"].keyids == before.roles["root"].keyids, "only timestamp rotated"

    def forge(name: str, body: bytes) -> bytes:
        """A newer timestamp signed with the retired key only (it still leaks, say)."""
        if name != "timestamp.json":
            return body
        forged = Metadata[Timestamp].from_bytes(body)
        forged.signed.version += 1
        forged.signatures.clear()
        forged.sign(old_key)
        return forged.to_bytes(JSONSerializer(compact=True))

    with pytest.raises(UnsignedMetadataError):
        director(fleet, car, cache, DeviceFetcher(fleet, car, forge)).refresh()
    director(fleet, car, cache).refresh()  # the real one still verifies


def test_director_data_from_one_key_keeps_serving_and_moves_to_per_role_keys(
    database_url: str, tmp_path: Path
) -> None:
    """A data_dir from before per-role keys: every role of every director on
    ``keys/director-online.pem``. The upgraded backend keeps that as the root key, makes
    the other three, and re-signs each director on a new root at its next contact."""
    settings = make_settings(database_url, tmp_path / "data")
    legacy_key = settings.key_dir / "director-online.pem"
    old = open_backend(settings)
    old.director = OnlineRepository.from_key_file(legacy_key)  # what the backend did before
    cache = tmp_path / "director"
    with TestClient(create_app(old)) as client:
        fleet = Fleet(client)
        fleet.model()
        car = fleet.vehicle(1)
        director(fleet, car, cache).refresh()
    old.close()
    legacy_root = trusted_root(cache)
    assert {legacy_root.roles[r].keyids[0] for r in ROLES} == {
        load_signer(legacy_key).public_key.keyid
    }
    for role in ("targets", "snapshot", "timestamp"):  # the old backend never had these
        (settings.key_dir / f"director-{role}.pem").unlink()

    new = open_backend(settings)
    try:
        with TestClient(create_app(new)) as client:
            fleet = Fleet(client)
            director(fleet, car, cache).refresh()
            root = trusted_root(cache)
            assert root.version == legacy_root.version + 1
            assert root.roles["root"].keyids == legacy_root.roles["root"].keyids
            assert len({root.roles[r].keyids[0] for r in ROLES}) == 4
            director(fleet, car, tmp_path / "fresh").refresh()
    finally:
        new.close()


def test_director_keys_move_onto_a_token_and_rotate_there(
    fleet: Fleet,
    car: SimVehicle,
    backend: Backend,
    tmp_path: Path,
    *,
    softhsm: SoftHsm,
    database_kind: str,
) -> None:
    """``rotate-keys --to-token``: every role's new key is made on a (SoftHSM2) token and
    its file holds only the key's URI; the vehicle follows the root chain onto them;
    rotating again makes the next keys on the same token."""
    cache = tmp_path / "director"
    director(fleet, car, cache).refresh()
    prefix = f"director-{database_kind}"
    moved = rotate(backend, tmp_path, "--to-token", softhsm.uri("token-b", prefix))
    files = backend.director_keys.paths
    for role in ROLES:
        held = files[role].read_text()
        assert held.startswith(f"pkcs11:token=token-b;object={prefix}-{role}-"), held
        assert "PRIVATE KEY" not in held and softhsm.pin_file.read_text().strip() not in held
        assert moved["rotated"][role]["key"] == held.strip().split("?")[0]
    director(fleet, car, cache).refresh()
    on_token = trusted_root(cache)
    for role in ROLES:
        assert on_token.roles[role].keyids == [moved["rotated"][role]["new_keyid"]]
        # SoftHSM2 signs EdDSA: the token keys are Ed25519, as the director's file keys.
        assert on_token.get_key(moved["rotated"][role]["new_keyid"]).scheme == "ed25519"
    timestamp = Metadata[Timestamp].from_bytes((cache / "timestamp.json").read_bytes())
    assert set(timestamp.signatures) == {moved["rotated"]["timestamp"]["new_keyid"]}

    again = rotate(backend, tmp_path, "--role", "timestamp")
    label = files["timestamp"].read_text().split(";object=")[1].split("?")[0]
    assert label.startswith(f"{prefix}-timestamp-") and label.count("-timestamp-") == 1
    assert again["rotated"]["timestamp"]["old_keyid"] == moved["rotated"]["timestamp"]["new_keyid"]
    director(fleet, car, cache).refresh()
    assert trusted_root(cache).roles["timestamp"].keyids == [
        again["rotated"]["timestamp"]["new_keyid"]
    ]
