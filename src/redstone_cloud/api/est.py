"""EST (RFC 7030) under ``/.well-known/est/``: cacerts, simpleenroll, simplereenroll.

Bodies are what EST clients send and expect: a base64 DER PKCS#10 request
(``application/pkcs10``) in, a base64 DER certs-only PKCS#7
(``application/pkcs7-mime; smime-type=certs-only``) out. ``simpleenroll``
authenticates with HTTP Basic ``VIN:enrollment-token`` (a 401 carries
``WWW-Authenticate``); ``simplereenroll`` with the vehicle's TLS client
certificate, checked like every device request (revoked: 403).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from pydantic import BaseModel, Field

from redstone_cloud.api import schemas
from redstone_cloud.api.common import AdminDep, BackendDep, DeviceDep, in_transaction, read_capped
from redstone_cloud.errors import InvalidInput
from redstone_cloud.services import est

router = APIRouter(tags=["est"])

PKCS7 = "application/pkcs7-mime; smime-type=certs-only"
MAX_REQUEST = 32 * 1024

_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "base64 DER certs-only PKCS#7",
        "content": {PKCS7: {"schema": {"type": "string"}}},
    },
    **schemas.DEVICE_ERRORS,
}
_CSR_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "base64 DER PKCS#10 certificate request",
        "content": {"application/pkcs10": {"schema": {"type": "string"}}},
    }
}


def _certs_only(der: bytes) -> Response:
    return Response(
        base64.encodebytes(der),
        media_type=PKCS7,
        headers={"Content-Transfer-Encoding": "base64"},
    )


async def _csr(request: Request) -> bytes:
    body = await read_capped(request, MAX_REQUEST)
    try:
        return base64.b64decode(b"".join(body.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("EST body is not base64 (RFC 7030 §4.2.1: base64 DER PKCS#10)") from None


def _basic(authorization: str | None) -> tuple[str, str]:
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() != "basic" or not value:
        raise est.EnrollRefused("simpleenroll needs HTTP Basic credentials VIN:enrollment-token")
    try:
        user, colon, secret = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise est.EnrollRefused("malformed Basic credentials") from None
    if not colon or not user or not secret:
        raise est.EnrollRefused("malformed Basic credentials")
    return user, secret


@router.get("/.well-known/est/cacerts", response_class=Response, responses=_ANSWER)
async def cacerts(backend: BackendDep) -> Response:
    """Every CA certificate (what the vehicle's TLS trusts for its own chain)."""
    with backend.sessions() as session:
        return _certs_only(est.cacerts(session))


@router.post(
    "/.well-known/est/simpleenroll",
    response_class=Response,
    responses=_ANSWER,
    openapi_extra=_CSR_BODY,
)
async def simpleenroll(
    request: Request,
    backend: BackendDep,
    authorization: Annotated[str | None, Header()] = None,
) -> Response:
    """First certificate: Basic ``VIN:token`` with a one-time enrollment token."""
    vin, token = _basic(authorization)
    csr = await _csr(request)
    der = await in_transaction(
        backend, lambda s: est.enroll(s, backend.settings.key_dir, vin, token, csr)
    )
    return _certs_only(der)


@router.post(
    "/.well-known/est/simplereenroll",
    response_class=Response,
    responses=_ANSWER,
    openapi_extra=_CSR_BODY,
)
async def simplereenroll(request: Request, identity: DeviceDep, backend: BackendDep) -> Response:
    """Renewal: a new certificate for the vehicle of this (valid, unrevoked) client cert."""
    csr = await _csr(request)
    der = await in_transaction(
        backend, lambda s: est.reenroll(s, backend.settings.key_dir, identity.vin, csr)
    )
    return _certs_only(der)


class TokenIn(BaseModel):
    ttl_s: int = Field(default=7 * 86400, ge=60, le=90 * 86400)


class TokenOut(BaseModel):
    token: str = Field(description="shown once; only its SHA-256 is kept")
    expires_at: dt.datetime


@router.post(
    "/api/v1/vehicles/{vin}/enrollment-tokens",
    response_model=TokenOut,
    status_code=201,
    tags=["admin"],
    responses=schemas.ADMIN_ERRORS,
)
async def enrollment_token(
    vin: str, body: TokenIn, backend: BackendDep, actor: AdminDep
) -> TokenOut:
    """A one-time token with which vehicle ``vin`` gets its first certificate over EST."""
    token, expires = await in_transaction(
        backend, lambda s: est.new_token(s, actor, vin, dt.timedelta(seconds=body.ttl_s))
    )
    return TokenOut(token=token, expires_at=expires)
