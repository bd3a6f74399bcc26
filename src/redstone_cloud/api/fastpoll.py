"""The poll hot path as plain ASGI, in front of FastAPI.

A fleet polls constantly and almost every answer is "304, nothing new". This
middleware answers those with one indexed query (certificate -> vehicle and its
``poll_rev``) and the cached poll view, skipping routing, dependency injection
and thread hops. Anything else — unknown or revoked certificate, a stale cache,
an offer to publish — falls through to the full route, which owns the rules.

The query runs on a connection this middleware holds in autocommit mode: a pool
checkout pre-pings the server and a return rolls back, two more round trips that
made a PostgreSQL poll cost 5x a ``/healthz`` (tools/bench/cloud.py). A failing
connection is dropped and the request falls through to the full route.

Polls that arrive together share one query (``PollBatcher``): every poll whose
request was read in the same turn of the event loop waits for the next turn,
where one statement looks all their certificates up. Each answer still comes
from a statement that ran after its request arrived, so it sees every
revocation and ``poll_rev`` committed before that; under load a batch of *n*
polls costs the database one round trip instead of *n*.

On PostgreSQL the query goes to psycopg directly as a server-side prepared
statement: SQLAlchemy's execute and result layers cost more Python time per poll
than the query's round trip (``_PsycopgLookup``). SQLite keeps SQLAlchemy, whose
result processing turns its stored text back into aware datetimes.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, any_, bindparam, select
from sqlalchemy.exc import DBAPIError

from redstone_cloud.backend import Backend
from redstone_cloud.db.models import DeviceCertificate, Vehicle
from redstone_cloud.db.types import utcnow
from redstone_cloud.services.device import etag_matches, etag_of
from redstone_cloud.tls import FINGERPRINT_STATE_KEY

POLL_PATH = "/api/v1/device/poll"

MAX_BATCH = 256
"""Certificates looked up by one statement at most."""

_COLUMNS = select(
    DeviceCertificate.fingerprint,
    Vehicle.id,
    Vehicle.poll_rev,
    DeviceCertificate.revoked_at,
    DeviceCertificate.not_after,
).join(Vehicle, DeviceCertificate.vehicle_id == Vehicle.id)
_LOOKUP = _COLUMNS.where(DeviceCertificate.fingerprint.in_(bindparam("fps", expanding=True)))
_LOOKUP_ARRAY = _COLUMNS.where(DeviceCertificate.fingerprint == any_(bindparam("fps")))
"""PostgreSQL: one array parameter, so one prepared statement serves every batch size."""


LookupRow = tuple[int, int, dt.datetime | None, dt.datetime]
"""Vehicle id, its poll_rev, the certificate's revoked_at and not_after (aware UTC)."""


class Lookup(Protocol):
    errors: tuple[type[Exception], ...]
    """What the driver raises when the connection or the statement fails."""

    def __call__(self, fingerprints: Sequence[str]) -> dict[str, LookupRow]:
        """The rows of those certificates that exist, by fingerprint."""

    def close(self) -> None: ...


class _SqlAlchemyLookup:
    """Any database: the statement through SQLAlchemy on an autocommit connection."""

    def __init__(self, engine: Engine) -> None:
        self._conn: Connection = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        self.errors: tuple[type[Exception], ...] = (DBAPIError,)

    def __call__(self, fingerprints: Sequence[str]) -> dict[str, LookupRow]:
        rows = self._conn.execute(_LOOKUP, {"fps": list(fingerprints)})
        return {row[0]: (row[1], row[2], row[3], row[4]) for row in rows}

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
        self._sql = str(_LOOKUP_ARRAY.compile(dialect=engine.dialect))
        self.errors: tuple[type[Exception], ...] = (engine.dialect.loaded_dbapi.Error,)

    def __call__(self, fingerprints: Sequence[str]) -> dict[str, LookupRow]:
        cursor = self._driver.execute(self._sql, {"fps": list(fingerprints)}, prepare=True)
        return {
            fingerprint: (int(vehicle_id), int(poll_rev), revoked_at, not_after)
            for fingerprint, vehicle_id, poll_rev, revoked_at, not_after in cursor.fetchall()
        }

    def close(self) -> None:
        self._raw.close()


def open_lookup(engine: Engine) -> Lookup:
    if engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg":
        return _PsycopgLookup(engine)
    return _SqlAlchemyLookup(engine)


class PollBatcher:
    """Collects the certificates asked for in one turn of the event loop and looks them up
    together at the start of the next (at most ``MAX_BATCH`` per call of *lookup*).

    *lookup* answers the rows found by fingerprint, or None when the database failed
    (every poll of that call then falls through to the full route)."""

    def __init__(self, lookup: Callable[[Sequence[str]], dict[str, LookupRow] | None]) -> None:
        self._lookup = lookup
        self._waiting: list[tuple[str, asyncio.Future[LookupRow | None]]] = []

    async def get(self, fingerprint: str) -> LookupRow | None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[LookupRow | None] = loop.create_future()
        self._waiting.append((fingerprint, future))
        if len(self._waiting) == 1:
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        waiting, self._waiting = self._waiting, []
        for start in range(0, len(waiting), MAX_BATCH):
            chunk = waiting[start : start + MAX_BATCH]
            try:
                rows = self._lookup(sorted({fingerprint for fingerprint, _ in chunk}))
            except Exception as error:  # a bug, not the database: fail these polls, not hang them
                for _, future in chunk:
                    if not future.done():
                        future.set_exception(error)
                continue
            for fingerprint, future in chunk:
                if not future.done():  # its request may have been cancelled meanwhile
                    future.set_result(None if rows is None else rows.get(fingerprint))


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
        self._lookup_port: Lookup | None = None
        self._errors: tuple[type[Exception], ...] = (DBAPIError,)
        self._batcher = PollBatcher(self._lookup)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == POLL_PATH and scope["method"] == "GET":
            start = time.perf_counter()
            answer = await self._answer(scope)
            if answer is not None:
                status, headers, body = answer
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                if self._record is not None:
                    self._record(status, time.perf_counter() - start)
                return
        await self.app(scope, receive, send)

    async def _answer(
        self, scope: dict[str, Any]
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None:
        fingerprint = scope.get("state", {}).get(FINGERPRINT_STATE_KEY)
        if not fingerprint:
            return None
        row = await self._batcher.get(fingerprint)
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

    def _lookup(self, fingerprints: Sequence[str]) -> dict[str, LookupRow] | None:
        try:
            if self._lookup_port is None:
                lookup = open_lookup(self.backend.engine)
                self._lookup_port, self._errors = lookup, lookup.errors
            return self._lookup_port(fingerprints)
        except self._errors + (DBAPIError,):  # the statement, or opening the connection
            self.close()  # the full route's pooled connection pre-pings and reconnects
            return None

    def close(self) -> None:
        """Give the held connection back (``serve`` calls this on shutdown)."""
        if self._lookup_port is not None:
            lookup, self._lookup_port = self._lookup_port, None
            with contextlib.suppress(*self._errors, DBAPIError):
                lookup.close()
