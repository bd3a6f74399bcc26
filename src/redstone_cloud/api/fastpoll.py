"""The poll hot path as plain ASGI, in front of FastAPI.

A fleet polls constantly and almost every answer is "304, nothing new". This
middleware answers those with one indexed query (certificate -> vehicle and its
``poll_rev``) and the cached poll view, skipping routing, dependency injection
and thread hops. Anything else — unknown or revoked certificate, a stale cache,
an offer to publish — falls through to the full route, which owns the rules.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select

from redstone_cloud.backend import Backend
from redstone_cloud.db.models import DeviceCertificate, Vehicle
from redstone_cloud.db.types import utcnow
from redstone_cloud.services.device import etag_matches, etag_of
from redstone_cloud.tls import FINGERPRINT_STATE_KEY

POLL_PATH = "/api/v1/device/poll"

_LOOKUP = (
    select(
        Vehicle.id,
        Vehicle.poll_rev,
        DeviceCertificate.revoked_at,
        DeviceCertificate.not_after,
    )
    .join(Vehicle, DeviceCertificate.vehicle_id == Vehicle.id)
    .where(DeviceCertificate.fingerprint == bindparam("fingerprint"))
)


class FastPoll:
    """ASGI middleware: serve cached poll answers, delegate everything else to ``app``."""

    def __init__(self, app: Any, backend: Backend) -> None:
        self.app = app
        self.backend = backend

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == POLL_PATH and scope["method"] == "GET":
            answer = self._answer(scope)
            if answer is not None:
                status, headers, body = answer
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    def _answer(self, scope: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None:
        fingerprint = scope.get("state", {}).get(FINGERPRINT_STATE_KEY)
        if not fingerprint:
            return None
        with self.backend.engine.connect() as conn:
            row = conn.execute(_LOOKUP, {"fingerprint": fingerprint}).first()
        if row is None:
            return None
        vehicle_id, poll_rev, revoked_at, not_after = row
        now = utcnow()
        view = self.backend.poll_cache.get(vehicle_id)
        if revoked_at is not None or not_after < now or view is None or view.poll_rev != poll_rev:
            return None
        body, needs_offer = view.answer(now)
        if needs_offer:
            return None
        etag = etag_of(body)
        headers = [(b"etag", etag.encode()), (b"cache-control", b"private, no-cache")]
        for name, value in scope["headers"]:
            if name == b"if-none-match" and etag_matches(etag, value.decode("latin-1")):
                return 304, headers, b""
        headers.append((b"content-type", b"application/json"))
        headers.append((b"content-length", str(len(body)).encode()))
        return 200, headers, body
