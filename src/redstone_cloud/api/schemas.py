"""Request and response bodies of the admin API (they also make the OpenAPI document)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import AwareDatetime, BaseModel, Field

from redstone_cloud.inputs import DB_INT_MAX


class ErrorOut(BaseModel):
    """Every error answer (4xx and 5xx): one line."""

    error: str


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for error statuses (all share :class:`ErrorOut`)."""
    return {status: {"model": ErrorOut, "description": _REASONS[status]} for status in statuses}


_REASONS = {
    400: "malformed request (NUL in the URL, bad header)",
    401: "no or unknown credentials",
    403: "credentials refused (revoked, expired, another vehicle's data or campaign)",
    404: "unknown object",
    405: "method not allowed",
    409: "conflict (duplicate, wrong state, replayed nonce)",
    413: "body over its size cap",
    416: "range not satisfiable",
    422: "invalid content",
    429: "the vehicle's quota is used up (see Retry-After)",
}

ADMIN_ERRORS = errors(400, 401, 404, 405, 409, 413, 422)
DEVICE_ERRORS = errors(400, 401, 403, 404, 405, 409, 413, 422, 429)


class EcuSlotIn(BaseModel):
    role: str = Field(min_length=1, max_length=64)
    hardware_id: str = Field(min_length=1, max_length=128)
    kind: str = Field(description="primary | sub | uds | bootloader")


class ModelIn(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    description: str = ""
    ecus: list[EcuSlotIn]


class ModelOut(BaseModel):
    name: str
    description: str
    ecus: list[EcuSlotIn]


class BaselineIn(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    targets: list[str] = Field(description="package target names, one per hardware id")


class BaselineOut(BaseModel):
    name: str
    model: str
    items: dict[str, str] = Field(description="hardware id -> package target")


class EcuIn(BaseModel):
    serial: str = Field(min_length=1, max_length=128)
    hardware_id: str = Field(min_length=1, max_length=128)
    primary: bool = False
    public_key: dict[str, Any] = Field(
        description="Uptane public key with keyid (redstone_agent.uptane.keys.public_key_to_dict)"
    )


class VehicleIn(BaseModel):
    vin: str = Field(max_length=17)
    model: str = Field(max_length=128)
    baseline: str | None = Field(default=None, max_length=128)
    ecus: list[EcuIn]


class EcuOut(BaseModel):
    serial: str
    hardware_id: str
    primary: bool
    installed_target: str | None
    installed_sha256: str | None
    updated_at: dt.datetime | None


class VehicleOut(BaseModel):
    vin: str
    model: str
    baseline: str | None
    last_seen_at: dt.datetime | None
    ecus: list[EcuOut]


class EcuVersionOut(BaseModel):
    target: str
    sha256: str
    reported_at: dt.datetime


class PackageOut(BaseModel):
    name: str
    version: str
    kind: str
    target: str
    hardware_ids: list[str]
    release_counter: int
    supplier: str
    length: int
    sha256: str
    base_target: str | None = None


class DeltaJobOut(BaseModel):
    id: int
    from_target: str
    to_target: str
    state: str = Field(description="pending, running, done, failed or skipped")
    delta_target: str | None
    full_length: int = Field(description="bytes of the full image the delta replaces")
    delta_length: int | None
    error: str = Field(description="why the job failed, or why its delta was not kept")
    running_s: int | None = Field(
        default=None, description="seconds since a worker took a running job; else null"
    )


class GroupIn(BaseModel):
    percent: int = Field(ge=1, le=100, description="cumulative share of targeted vehicles")
    success_threshold: int = Field(default=95, ge=0, le=100)
    error_threshold: int = Field(default=5, ge=0, le=100)


class TargetingIn(BaseModel):
    model: str | None = None
    baseline: str | None = None
    vins: list[str] = []
    ecu_versions: dict[str, list[str]] = Field(
        default_factory=dict, description="hardware id -> installed targets that qualify"
    )


class CampaignIn(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    targeting: TargetingIn
    packages: list[str]
    groups: list[GroupIn] = [GroupIn(percent=100)]
    consent_required: bool = False
    start_at: AwareDatetime | None = None
    window: dict[str, Any] | None = Field(
        None,
        description='maintenance window, e.g. {"days": [5, 6], "start": "22:00", "end": "04:00"}',
    )
    release_notes_url: str = Field(
        "",
        max_length=2048,
        description="http(s) URL of the release notes, shown to the driver; empty: none",
    )


class ReasonIn(BaseModel):
    reason: str = Field(default="", max_length=1000)


class CaIn(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    parent: str | None = Field(default=None, description="issuing parent CA; none: a new root")
    key_uri: str | None = Field(
        default=None,
        max_length=1024,
        description="pkcs11: URI of the CA key on a token (made there if absent); "
        "none: a key file. The PIN comes from pin-source or the server's environment.",
    )


class CaOut(BaseModel):
    name: str
    issuing: bool
    cert_pem: str


class CsrIn(BaseModel):
    csr_pem: str
    days: int = Field(default=825, ge=1, le=3650)


class CertificateOut(BaseModel):
    serial: str
    fingerprint: str
    vin: str
    not_after: dt.datetime
    revoked_at: dt.datetime | None
    cert_pem: str


class EventIn(BaseModel):
    kind: str = Field(min_length=1, max_length=64)
    campaign: str | None = Field(default=None, max_length=128)
    ecu_serial: str = Field(default="", max_length=128)
    detail: dict[str, Any] = Field(
        default={},
        description="free-form; at most 32 levels deep, finite numbers, no NUL characters",
    )


DbInt = Field(ge=0, le=DB_INT_MAX)
"""Counters and ids fit PostgreSQL's 32-bit INTEGER."""
