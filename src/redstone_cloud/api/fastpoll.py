"""The poll hot path as plain ASGI, in front of FastAPI.

A fleet polls constantly and almost every answer is "304, nothing new". This
middleware answers those with one indexed query (certificate -> vehicle and its
``poll_rev``) and the cached poll view, skipping routing, dependency injection
and thread hops. Anything else — unknown or revoked certificate, a stale cache,
an offer to publish — falls through to the full route, which owns the rules.

The query runs on a connection this middleware holds in autocommit mode: a pool
checkout pre-pings the server and a return rolls back, two more round trips that
made a PostgreSQL poll cost 5x a ``/healthz`` (tools/bench/cloud.py). Each
statement still sees every committed revocation and ``poll_rev``. A failing
connection is dropped and the request falls through to the full route.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Any

from sqlalchemy import Connection, Row, bindparam, select
from sqlalchemy.exc import DBAPIError

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
        self._conn: Connection | None = None

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
        row = self._lookup(fingerprint)
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

    def _lookup(self, fingerprint: str) -> Row[int, int, dt.datetime | None, dt.datetime] | None:
        try:
            if self._conn is None:
                conn = self.backend.engine.connect()
                self._conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            return self._conn.execute(_LOOKUP, {"fingerprint": fingerprint}).first()
        except DBAPIError:
            self.close()  # the full route's pooled connection pre-pings and reconnects
            return None

    def close(self) -> None:
        """Give the held connection back (``serve`` calls this on shutdown)."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(DBAPIError):
                conn.close()
