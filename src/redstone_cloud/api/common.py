"""Plumbing shared by the routers: backend access, errors, auth, capped bodies."""

from __future__ import annotations

import hmac
import math
from collections.abc import Callable, Coroutine, Sequence
from tempfile import SpooledTemporaryFile
from typing import Annotated, Any, TypeVar
from urllib.parse import unquote

from fastapi import Depends, Header, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.types import Message

from redstone_agent.errors import RedstoneError
from redstone_cloud import inputs, pki
from redstone_cloud.backend import Backend
from redstone_cloud.db.engine import transaction
from redstone_cloud.db.types import utcnow
from redstone_cloud.errors import (
    CloudError,
    InvalidInput,
    RangeNotSatisfiable,
    TooLarge,
    Unauthorized,
)
from redstone_cloud.inputs import ascii_int
from redstone_cloud.quotas import QuotaExceeded
from redstone_cloud.services import device
from redstone_cloud.settings import Admin, MetricsReader, token_digest
from redstone_cloud.tls import FINGERPRINT_STATE_KEY

T = TypeVar("T")


def backend_of(request: Request) -> Backend:
    backend = request.app.state.backend
    assert isinstance(backend, Backend)
    return backend


BackendDep = Annotated[Backend, Depends(backend_of)]


def error_response(exc: RedstoneError) -> JSONResponse:
    status = exc.status if isinstance(exc, CloudError) else 400
    headers = {"WWW-Authenticate": exc.challenge} if isinstance(exc, Unauthorized) else {}
    if isinstance(exc, RangeNotSatisfiable):
        headers["Content-Range"] = f"bytes */{exc.length}"
    if isinstance(exc, QuotaExceeded):
        headers["Retry-After"] = str(math.ceil(min(exc.retry_after, 3600.0)))
    return JSONResponse({"error": str(exc)}, status_code=status, headers=headers)


async def in_transaction(backend: Backend, work: Callable[..., T], *args: Any) -> T:
    """Run ``work(session, *args)`` in one transaction on a worker thread."""

    def run() -> T:
        with transaction(backend.sessions) as session:
            return work(session, *args)

    return await run_in_threadpool(run)


# --- admin authentication --------------------------------------------------------------


def authenticate_admin(backend: Backend, authorization: str | None) -> str:
    """The admin's name from ``Authorization: Bearer <token>`` (scheme in any case,
    RFC 9110 section 11.1); 401 otherwise."""
    return bearer_holder(backend.settings.admins, authorization, "admin")


def bearer_holder(
    holders: Sequence[Admin | MetricsReader], authorization: str | None, what: str
) -> str:
    """The name of the holder whose token ``Authorization: Bearer <token>`` carries; 401
    otherwise (``what`` names the kind of token in the message)."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(f"{what} API needs 'Authorization: Bearer <token>'")
    digest = token_digest(token.strip())
    for holder in holders:
        if hmac.compare_digest(holder.token_sha256.lower(), digest):
            return holder.name
    raise Unauthorized(f"{what} token not recognised")


def admin_actor(backend: BackendDep, authorization: Annotated[str | None, Header()] = None) -> str:
    return authenticate_admin(backend, authorization)


AdminDep = Annotated[str, Depends(admin_actor)]


# --- device authentication -----------------------------------------------------------------


def client_fingerprint(request: Request, backend: Backend) -> str:
    """SHA-256 of the client certificate from our TLS, or from a configured proxy header."""
    fingerprint = request.scope.get("state", {}).get(FINGERPRINT_STATE_KEY)
    if isinstance(fingerprint, str) and fingerprint:
        return fingerprint
    header = backend.settings.client_cert_header
    if header:
        escaped = request.headers.get(header)
        if escaped:
            return pki.der_fingerprint(pki.cert_from_pem(unquote(escaped)))
    raise Unauthorized("the device API needs a TLS client certificate")


def identify(request: Request, backend: Backend) -> device.Identity:
    fingerprint = client_fingerprint(request, backend)
    with backend.sessions() as session:
        return device.identify(session, fingerprint, utcnow())


async def device_identity(request: Request, backend: BackendDep) -> device.Identity:
    return await run_in_threadpool(identify, request, backend)


DeviceDep = Annotated[device.Identity, Depends(device_identity)]


# --- bodies -----------------------------------------------------------------------------------


def _check_length(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared is not None:
        size = ascii_int(declared)
        if size is None:
            raise InvalidInput("Content-Length is not a number")
        if size > limit:
            raise TooLarge(f"body of {size} bytes exceeds the {limit}-byte limit")


async def read_capped(request: Request, limit: int) -> bytes:
    """The whole body, refusing more than ``limit`` bytes even if Content-Length lied."""
    _check_length(request, limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"body exceeds the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


async def spool_capped(request: Request, limit: int) -> SpooledTemporaryFile[bytes]:
    """Stream a large body to a temporary file (in memory up to 8 MiB), capped."""
    _check_length(request, limit)
    spool: SpooledTemporaryFile[bytes] = SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise TooLarge(f"upload exceeds the {limit}-byte limit")
            spool.write(chunk)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool


class CappedJsonRoute(APIRoute):
    """A route whose declared JSON body is read capped before FastAPI parses it.

    FastAPI buffers a body model's request whole, without limit; this refuses one
    over ``max_admin_json_bytes`` with 413 while it streams. Routes that read the
    request themselves (uploads) have no body field and are left as they are.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def capped(request: Request) -> Response:
            backend = backend_of(request)
            authenticate_admin(backend, request.headers.get("authorization"))
            body = await read_capped(request, backend.settings.max_admin_json_bytes)
            inputs.parse_json(body, "request body")
            replayed = False

            async def receive() -> Message:
                nonlocal replayed
                if replayed:
                    return await request.receive()
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}

            return await handler(Request(request.scope, receive))

        return capped
