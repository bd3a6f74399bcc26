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

On PostgreSQL the query goes to psycopg directly as a server-side prepared
statement: SQLAlchemy's execute and result layers cost more Python time per poll
than the query's round trip (``_PsycopgLookup``). SQLite keeps SQLAlchemy, whose
result processing turns its stored text back into aware datetimes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, bindparam, select
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


LookupRow = tuple[int, int, dt.datetime | None, dt.datetime]
"""Vehicle id, its poll_rev, the certificate's revoked_at and not_after (aware UTC)."""


class _Lookup(Protocol):
    errors: tuple[type[Exception], ...]
    """What the driver raises when the connection or the statement fails."""

    def __call__(self, fingerprint: str) -> LookupRow | None: ...

    def close(self) -> None: ...


class _SqlAlchemyLookup:
    """Any database: the statement through SQLAlchemy on an autocommit connection."""

    def __init__(self, engine: Engine) -> None:
        self._conn: Connection = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        self.errors: tuple[type[Exception], ...] = (DBAPIError,)

    def __call__(self, fingerprint: str) -> LookupRow | None:
        row = self._conn.execute(_LOOKUP, {"fingerprint": fingerprint}).first()
        return None if row is None else (row[0], row[1], row[2], row[3])

    def close(self) -> None:
        self._conn.close()


class _PsycopgLookup:
    """PostgreSQL: the same statement, compiled once, prepared on the server, run by psycopg.

    ``timestamptz`` columns come back as aware datetimes, which is all
    ``UTCDateTime`` would have done.
    """

    def __init__(self, engine: Engine) -> None:
        self._raw = engine.raw_connection()
        driver: Any = self._raw.driver_connection
        driver.autocommit = True
        self._driver = driver
        self._sql = str(_LOOKUP.compile(dialect=engine.dialect))
        self.errors: tuple[type[Exception], ...] = (engine.dialect.loaded_dbapi.Error,)

    def __call__(self, fingerprint: str) -> LookupRow | None:
        cursor = self._driver.execute(self._sql, {"fingerprint": fingerprint}, prepare=True)
        row = cursor.fetchone()
        if row is None:
            return None
        vehicle_id, poll_rev, revoked_at, not_after = row
        return int(vehicle_id), int(poll_rev), revoked_at, not_after

    def close(self) -> None:
        self._raw.close()


def _open_lookup(engine: Engine) -> _Lookup:
    if engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg":
        return _PsycopgLookup(engine)
    return _SqlAlchemyLookup(engine)


class FastPoll:
    """ASGI middleware: serve cached poll answers, delegate everything else to ``app``.

    ``record(status, seconds)`` counts each poll answered here (``api/metrics.py``):
    these never reach the app's middleware."""

    def __init__(
        self, app: Any, backend: Backend, record: Callable[[int, float], None] | None = None
    ) -> None:
        self.app = app
        self.backend = backend
        self._record = record
        self._lookup_port: _Lookup | None = None
        self._errors: tuple[type[Exception], ...] = (DBAPIError,)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == POLL_PATH and scope["method"] == "GET":
            start = time.perf_counter()
            answer = self._answer(scope)
            if answer is not None:
                status, headers, body = answer
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                if self._record is not None:
                    self._record(status, time.perf_counter() - start)
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

    def _lookup(self, fingerprint: str) -> LookupRow | None:
        try:
            if self._lookup_port is None:
                lookup = _open_lookup(self.backend.engine)
                self._lookup_port, self._errors = lookup, lookup.errors
            return self._lookup_port(fingerprint)
        except self._errors:
            self.close()  # the full route's pooled connection pre-pings and reconnects
            return None
        except DBAPIError:  # opening the connection failed
            self.close()
            return None

    def close(self) -> None:
        """Give the held connection back (``serve`` calls this on shutdown)."""
        if self._lookup_port is not None:
            lookup, self._lookup_port = self._lookup_port, None
            with contextlib.suppress(*self._errors, DBAPIError):
                lookup.close()
