"""The backend's data model (SQLAlchemy 2, typed declarative).

The schema itself is owned by the Alembic migrations in
``redstone_cloud/db/migrations``; a test checks that these classes and the
migrated schema agree.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from redstone_cloud.db.types import UTCDateTime, utcnow

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with deterministic constraint names (needed for migrations)."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dt.datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
    }


def _created() -> Mapped[dt.datetime]:
    return mapped_column(UTCDateTime(), default=utcnow, nullable=False)


# --- vehicle models and baselines -------------------------------------------------


class VehicleModel(Base):
    """A vehicle type/configuration with its ECU topology."""

    __tablename__ = "vehicle_models"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = _created()
    ecus: Mapped[list[ModelEcu]] = relationship(
        back_populates="model", cascade="all, delete-orphan", order_by="ModelEcu.id"
    )


class ModelEcu(Base):
    """One ECU slot of a model's topology (a role with its hardware id)."""

    __tablename__ = "model_ecus"
    __table_args__ = (UniqueConstraint("model_id", "role"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("vehicle_models.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(64))
    hardware_id: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))  # primary | sub | uds | bootloader
    model: Mapped[VehicleModel] = relationship(back_populates="ecus")


class Baseline(Base):
    """A named, consistent set of software versions for a model (hardware id -> package)."""

    __tablename__ = "baselines"
    __table_args__ = (UniqueConstraint("model_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("vehicle_models.id"))
    name: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = _created()
    items: Mapped[list[BaselineItem]] = relationship(
        cascade="all, delete-orphan", order_by="BaselineItem.id"
    )


class BaselineItem(Base):
    """The package a baseline prescribes for one hardware id."""

    __tablename__ = "baseline_items"
    __table_args__ = (UniqueConstraint("baseline_id", "hardware_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    baseline_id: Mapped[int] = mapped_column(ForeignKey("baselines.id", ondelete="CASCADE"))
    hardware_id: Mapped[str] = mapped_column(String(128))
    package_id: Mapped[int] = mapped_column(ForeignKey("packages.id"))
    package: Mapped[Package] = relationship()


# --- vehicles and inventory --------------------------------------------------------


class Vehicle(Base):
    """A vehicle by VIN. ``poll_rev`` changes whenever what it would poll changes."""

    __tablename__ = "vehicles"
    id: Mapped[int] = mapped_column(primary_key=True)
    vin: Mapped[str] = mapped_column(String(17), unique=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("vehicle_models.id"))
    baseline_id: Mapped[int | None] = mapped_column(ForeignKey("baselines.id"))
    poll_rev: Mapped[int] = mapped_column(Integer, default=1)
    director_dirty: Mapped[bool] = mapped_column(Boolean, default=False)
    """Set when an offer was withdrawn: the director re-publishes at the next contact."""
    created_at: Mapped[dt.datetime] = _created()
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    model: Mapped[VehicleModel] = relationship()
    baseline: Mapped[Baseline | None] = relationship()
    ecus: Mapped[list[Ecu]] = relationship(
        back_populates="vehicle", cascade="all, delete-orphan", order_by="Ecu.id"
    )


class Ecu(Base):
    """An ECU of a vehicle: serial, hardware id, signing key and installed software."""

    __tablename__ = "ecus"
    __table_args__ = (Index("ix_ecus_vehicle_id", "vehicle_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id", ondelete="CASCADE"))
    serial: Mapped[str] = mapped_column(String(128), unique=True)
    hardware_id: Mapped[str] = mapped_column(String(128))
    is_primary: Mapped[bool] = mapped_column(Boolean, default=False)
    public_key: Mapped[dict[str, Any]] = mapped_column(JSON)
    installed_target: Mapped[str | None] = mapped_column(String(512))
    installed_sha256: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    vehicle: Mapped[Vehicle] = relationship(back_populates="ecus")


class EcuVersion(Base):
    """Version history: one row each time a manifest reports a changed installed image."""

    __tablename__ = "ecu_versions"
    id: Mapped[int] = mapped_column(primary_key=True)
    ecu_id: Mapped[int] = mapped_column(ForeignKey("ecus.id", ondelete="CASCADE"), index=True)
    target: Mapped[str] = mapped_column(String(512))
    sha256: Mapped[str] = mapped_column(String(64))
    manifest_id: Mapped[int] = mapped_column(ForeignKey("manifests.id"))
    reported_at: Mapped[dt.datetime] = _created()


class ManifestNonce(Base):
    """A nonce the backend handed to a vehicle; a manifest must carry an unused one."""

    __tablename__ = "manifest_nonces"
    id: Mapped[int] = mapped_column(primary_key=True)
    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id", ondelete="CASCADE"))
    nonce: Mapped[str] = mapped_column(String(64), unique=True)
    issued_at: Mapped[dt.datetime] = _created()
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class Manifest(Base):
    """A verified vehicle manifest; the (vehicle, nonce) pair may be used only once."""

    __tablename__ = "manifests"
    __table_args__ = (UniqueConstraint("vehicle_id", "nonce"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id", ondelete="CASCADE"))
    nonce: Mapped[str] = mapped_column(String(128))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[dt.datetime] = _created()


# --- packages and Uptane repositories ----------------------------------------------


class Package(Base):
    """A stored software artefact (image, delta or config) and its Uptane target identity."""

    __tablename__ = "packages"
    __table_args__ = (UniqueConstraint("name", "version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # image | delta | config
    target: Mapped[str] = mapped_column(String(512), unique=True)
    hardware_ids: Mapped[list[str]] = mapped_column(JSON)
    release_counter: Mapped[int] = mapped_column(Integer, default=0)
    supplier: Mapped[str] = mapped_column(String(128), default="")
    length: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(512))
    base_package_id: Mapped[int | None] = mapped_column(ForeignKey("packages.id"))
    created_at: Mapped[dt.datetime] = _created()


class DeltaJob(Base):
    """Background generation of a delta from ``from_package`` to ``to_package``."""

    __tablename__ = "delta_jobs"
    __table_args__ = (UniqueConstraint("from_package_id", "to_package_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    from_package_id: Mapped[int] = mapped_column(ForeignKey("packages.id"))
    to_package_id: Mapped[int] = mapped_column(ForeignKey("packages.id"))
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending|running|done|failed
    delta_package_id: Mapped[int | None] = mapped_column(ForeignKey("packages.id"))
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = _created()
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class RepoMetadata(Base):
    """A published image-repository file (``root.json``, ``3.targets.json``...), served verbatim."""

    __tablename__ = "repo_metadata"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(160), unique=True)
    role: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = _created()


class DirectorMetadata(Base):
    """A published file of one vehicle's director repository, signed with online keys."""

    __tablename__ = "director_metadata"
    __table_args__ = (UniqueConstraint("vehicle_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(160))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = _created()


# --- campaigns -----------------------------------------------------------------------


class Campaign(Base):
    """A rollout of packages to a targeted set of vehicles, in phased groups."""

    __tablename__ = "campaigns"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    state: Mapped[str] = mapped_column(String(16), default="draft")
    targeting: Mapped[dict[str, Any]] = mapped_column(JSON)
    consent_required: Mapped[bool] = mapped_column(Boolean, default=False)
    start_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    window: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    release_notes_url: Mapped[str] = mapped_column(String(2048), default="", server_default="")
    """Where drivers and workshops read what the campaign changes ("" when nowhere)."""
    created_at: Mapped[dt.datetime] = _created()
    packages: Mapped[list[CampaignPackage]] = relationship(
        cascade="all, delete-orphan", order_by="CampaignPackage.id"
    )
    groups: Mapped[list[RolloutGroup]] = relationship(
        cascade="all, delete-orphan", order_by="RolloutGroup.position"
    )


class CampaignPackage(Base):
    """A package the campaign installs (on every ECU whose hardware id it matches)."""

    __tablename__ = "campaign_packages"
    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    package_id: Mapped[int] = mapped_column(ForeignKey("packages.id"))
    package: Mapped[Package] = relationship()


class RolloutGroup(Base):
    """A phase of a campaign with the thresholds that move it on or stop it."""

    __tablename__ = "rollout_groups"
    __table_args__ = (UniqueConstraint("campaign_id", "position"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    percent: Mapped[int] = mapped_column(Integer)  # cumulative share of targets, 1..100
    success_threshold: Mapped[int] = mapped_column(Integer)  # % succeeded to advance
    error_threshold: Mapped[int] = mapped_column(Integer)  # % failed to abort
    state: Mapped[str] = mapped_column(String(16), default="waiting")


class Assignment(Base):
    """One vehicle in one campaign: its group, state and latest detail."""

    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("campaign_id", "vehicle_id"),
        Index("ix_assignments_vehicle_state", "vehicle_id", "state"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id", ondelete="CASCADE"))
    group_position: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="waiting")
    detail: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[dt.datetime] = _created()
    vehicle: Mapped[Vehicle] = relationship()


# --- events, logs, audit -------------------------------------------------------------


class DeviceEvent(Base):
    """An event a vehicle reported (download started, install failed, rolled back, ...)."""

    __tablename__ = "device_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id", ondelete="CASCADE"))
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"), index=True)
    ecu_serial: Mapped[str] = mapped_column(String(128), default="")
    kind: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    at: Mapped[dt.datetime] = _created()


class DeviceLog(Base):
    """A log excerpt a vehicle uploaded, searchable by vehicle, campaign and text."""

    __tablename__ = "device_logs"
    id: Mapped[int] = mapped_column(primary_key=True)
    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id", ondelete="CASCADE"))
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"), index=True)
    source: Mapped[str] = mapped_column(String(128), default="")
    text: Mapped[str] = mapped_column(Text)
    at: Mapped[dt.datetime] = _created()


class AuditRecord(Base):
    """Append-only trail of admin actions and device events (triggers forbid changes)."""

    __tablename__ = "audit_records"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = _created()
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64), index=True)
    object_type: Mapped[str] = mapped_column(String(64))
    object_id: Mapped[str] = mapped_column(String(128))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)


# --- PKI -------------------------------------------------------------------------------


class CertificateAuthority(Base):
    """The CA (root or intermediate) device certificates are issued from. Its key is a
    0600 file in the key directory, or (``key_uri``) an object on a PKCS#11 token."""

    __tablename__ = "certificate_authorities"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    cert_pem: Mapped[str] = mapped_column(Text)
    key_uri: Mapped[str | None] = mapped_column(String(1024))
    """``pkcs11:`` URI of the key (module path and PIN source included, never a PIN)."""
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("certificate_authorities.id"))
    issuing: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = _created()


class EnrollmentToken(Base):
    """A one-time secret with which a vehicle gets its first certificate over EST
    (RFC 7030 ``simpleenroll``); only its SHA-256 is kept."""

    __tablename__ = "enrollment_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    vehicle_id: Mapped[int] = mapped_column(
        ForeignKey("vehicles.id", ondelete="CASCADE"), index=True
    )
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[dt.datetime] = _created()


class DeviceCertificate(Base):
    """A certificate issued to a vehicle; the device API maps a TLS client cert to it."""

    __tablename__ = "device_certificates"
    id: Mapped[int] = mapped_column(primary_key=True)
    serial: Mapped[str] = mapped_column(String(64), unique=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id", ondelete="CASCADE"))
    issuer_id: Mapped[int] = mapped_column(ForeignKey("certificate_authorities.id"))
    cert_pem: Mapped[str] = mapped_column(Text)
    not_after: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    revocation_reason: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[dt.datetime] = _created()


# --- console sign-in ---------------------------------------------------------------------


class ConsoleUser(Base):
    """A person who signs in to the web console; only an scrypt hash of the password."""

    __tablename__ = "console_users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(32))  # viewer | release-manager | admin
    password_hash: Mapped[str] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = _created()


class ConsoleSession(Base):
    """A signed-in browser. Only the SHA-256 of the cookie's session id is stored;
    it ends at ``expires_at`` or when unused for the configured idle time."""

    __tablename__ = "console_sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("console_users.id", ondelete="CASCADE"), index=True
    )
    id_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = _created()
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    user: Mapped[ConsoleUser] = relationship()


class ConsoleLoginFailure(Base):
    """A failed sign-in, counted per user name and per client address (in the database,
    so that every ``serve`` process sees the same count)."""

    __tablename__ = "console_login_failures"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), index=True)
    client: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
