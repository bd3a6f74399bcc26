"""The operator's side of the cloud: admin API calls and a vehicle's device API calls.

Every call names itself in the error when the backend refuses it, so a
failed provisioning step is one line saying which request and why.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

import httpx

from redstone_agent.vvehicle.errors import CloudError

DELTA_TIMEOUT = 300.0
DELTA_POLL_S = 0.25
"""A release waits on the cloud's delta jobs (about half a second each): ask often."""


def _check(response: httpx.Response, what: str, ok: tuple[int, ...] = (200, 201)) -> Any:
    if response.status_code not in ok:
        try:
            reason = response.json().get("error", response.text)
        except ValueError:
            reason = response.text
        raise CloudError(f"{what}: HTTP {response.status_code}: {str(reason).strip()[:300]}")
    return response.json() if response.content else None


class _Api:
    """An open client; ``with`` closes it."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()


class Operator(_Api):
    """Admin API (bearer token) over an open client."""

    def __init__(self, client: httpx.Client, token: str) -> None:
        super().__init__(client)
        self.headers = {"Authorization": f"Bearer {token}"}

    def call(self, method: str, path: str, *, ok: tuple[int, ...] = (200, 201), **kw: Any) -> Any:
        try:
            response = self.client.request(method, path, headers=self.headers, **kw)
        except httpx.HTTPError as exc:
            raise CloudError(f"{method} {path}: {exc}") from None
        return _check(response, f"{method} {path}", ok)

    def create_model(self, body: dict[str, object]) -> None:
        self.call("POST", "/api/v1/models", json=body)

    def register_vehicle(self, body: dict[str, object]) -> None:
        self.call("POST", "/api/v1/vehicles", json=body)

    def issue_certificate(self, vin: str, csr_pem: bytes, days: int = 30) -> str:
        """The vehicle's client certificate (PEM) for its CSR."""
        body = {"csr_pem": csr_pem.decode(), "days": days}
        issued = self.call("POST", f"/api/v1/vehicles/{vin}/certificates", json=body)
        return str(issued["cert_pem"])

    def upload_package(
        self, name: str, version: str, hardware_id: str, data: bytes, release_counter: int
    ) -> dict[str, Any]:
        params: dict[str, str | int] = {
            "hardware_id": hardware_id,
            "release_counter": release_counter,
        }
        headers = {**self.headers, "Content-Type": "application/octet-stream"}
        path = f"/api/v1/packages/{name}/{version}"
        try:
            response = self.client.put(path, params=params, content=data, headers=headers)
        except httpx.HTTPError as exc:
            raise CloudError(f"PUT {path}: {exc}") from None
        return dict(_check(response, f"PUT {path}"))

    def packages(self) -> list[dict[str, Any]]:
        return list(self.call("GET", "/api/v1/packages"))

    def download(self, target: str, into: Path) -> Path:
        """Any package's or delta's bytes by target name (admin route; the backend audits
        it). A vehicle certificate downloads only its own assignment."""
        path = f"/api/v1/targets/{target}"
        try:
            response = self.client.get(path, headers=self.headers, follow_redirects=True)
        except httpx.HTTPError as exc:
            raise CloudError(f"GET {path}: {exc}") from None
        if response.status_code != 200:
            _check(response, f"download {target}")
        into.write_bytes(response.content)
        return into

    def wait_deltas(
        self, timeout: float = DELTA_TIMEOUT, progress: Callable[[str], None] | None = None
    ) -> list[dict[str, Any]]:
        """Wait until the backend's delta worker finished every job; return the delta packages.

        A failed job is an error: the campaign would silently ship full images.
        """
        deadline = time.monotonic() + timeout
        while True:
            jobs = list(self.call("GET", "/api/v1/deltas"))
            failed = [j for j in jobs if j.get("state") == "failed"]
            if failed:
                raise CloudError(
                    f"delta job {failed[0].get('id')} failed: {failed[0].get('error')}"
                )
            pending = [j for j in jobs if j.get("state") != "done"]
            if not pending:
                return [p for p in self.packages() if p.get("kind") == "delta"]
            if time.monotonic() > deadline:
                raise CloudError(f"{len(pending)} delta jobs still pending after {timeout:g} s")
            if progress is not None:
                progress(f"waiting for {len(pending)} server-side delta job(s)")
            time.sleep(DELTA_POLL_S)

    def upload_image_repo(self, files: list[tuple[str, bytes]]) -> None:
        """Offline-signed metadata in publication order; already published files (409) are fine."""
        for name, data in files:
            self.call("PUT", f"/api/v1/image-repo/{name}", content=data, ok=(200, 201, 409))

    def create_campaign(self, body: dict[str, object]) -> None:
        self.call("POST", "/api/v1/campaigns", json=body)

    def start_campaign(self, name: str) -> dict[str, Any]:
        return dict(self.call("POST", f"/api/v1/campaigns/{name}/start"))

    def campaign(self, name: str) -> dict[str, Any]:
        return dict(self.call("GET", f"/api/v1/campaigns/{name}"))

    def campaign_vehicles(self, name: str) -> list[dict[str, Any]]:
        return list(self.call("GET", f"/api/v1/campaigns/{name}/vehicles"))


class Device(_Api):
    """The vehicle's own view (mTLS client certificate): poll, metadata, downloads."""

    def get(self, path: str) -> httpx.Response:
        try:
            return self.client.get(path)
        except httpx.HTTPError as exc:
            raise CloudError(f"GET {path}: {exc}") from None

    def poll(self) -> dict[str, Any]:
        return dict(_check(self.get("/api/v1/device/poll"), "device poll"))

    def director_root(self, vin: str) -> bytes:
        response = self.get(f"/uptane/director/{vin}/1.root.json")
        _check(response, "director 1.root.json")
        return response.content

    def download(self, target: str, into: Path) -> Path:
        response = self.get(f"/api/v1/device/targets/{target}")
        if response.status_code != 200:
            _check(response, f"download {target}")
        into.write_bytes(response.content)
        return into
