"""Backend configuration: a ``[cloud]`` TOML table becomes :class:`Settings`.

Example (``redstone-cloud --config cloud.toml serve``)::

    [cloud]
    database_url = "postgresql://redstone@db/redstone"
    data_dir = "/var/lib/redstone-cloud"

    [[cloud.admins]]
    name = "alice"
    token_sha256 = "<sha256 hex of alice's bearer token>"

    [cloud.tls]
    cert = "/etc/redstone-cloud/server.pem"
    key = "/etc/redstone-cloud/server.key"
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from redstone_agent.config import load


@dataclass(frozen=True)
class Admin:
    """An operator allowed to use the admin API; the token itself is never stored."""

    name: str
    token_sha256: str


@dataclass(frozen=True)
class MetricsReader:
    """A scraper allowed to read ``GET /metrics`` and nothing else (its token's SHA-256)."""

    name: str
    token_sha256: str


@dataclass(frozen=True)
class TlsSettings:
    """Server certificate for ``serve``; client certificates are checked against the PKI."""

    cert: Path | None = None
    key: Path | None = None
    client_ca: Path | None = None
    """CA bundle for client certificates; default: the backend's own issuing CAs."""


@dataclass(frozen=True)
class S3Settings:
    """An S3-compatible object store (AWS S3, MinIO, Ceph RGW)."""

    endpoint: str = ""
    bucket: str = ""
    region: str = "us-east-1"
    access_key: str = ""
    secret_key: str = ""


@dataclass(frozen=True)
class ConsoleSettings:
    """The web console's sign-in rules (``[cloud.console]``, docs/console.md)."""

    session_idle_s: int = 30 * 60
    """A session unused this long ends; the next page asks to sign in again."""
    session_absolute_s: int = 12 * 3600
    """A session ends this long after sign-in however busy it is."""
    login_max_failures: int = 5
    """Failed sign-ins for one user name within ``login_window_s`` that lock it."""
    login_max_failures_per_client: int = 20
    """Failed sign-ins from one client address within ``login_window_s`` that lock it."""
    login_window_s: int = 15 * 60
    login_lockout_s: int = 15 * 60
    """How long a locked user name or address is refused after its last failure."""
    secure_cookie: Literal["auto", "always"] = "auto"
    """``auto``: the cookie is ``Secure`` when the request came over HTTPS (``serve``'s own
    TLS, or a proxy's ``X-Forwarded-Proto`` from a trusted address); ``always``: even
    on plain HTTP (behind a TLS proxy whose header uvicorn does not trust)."""


@dataclass(frozen=True)
class Settings:
    """Everything the backend needs to run; defaults suit a single-machine trial."""

    database_url: str = "sqlite:///redstone-cloud.db"
    data_dir: Path = Path("redstone-cloud-data")
    storage: Literal["filesystem", "s3"] = "filesystem"
    s3: S3Settings = field(default_factory=S3Settings)
    admins: list[Admin] = field(default_factory=list)
    tls: TlsSettings = field(default_factory=TlsSettings)
    max_upload_bytes: int = 4 * 1024**3
    max_manifest_bytes: int = 256 * 1024
    max_log_bytes: int = 1024 * 1024
    max_event_bytes: int = 64 * 1024
    max_admin_json_bytes: int = 4 * 1024**2
    """Admin API JSON bodies (campaign specs, image-repository metadata...)."""
    poll_interval_s: int = 300
    download_url_expiry_s: int = 3600
    director_online_key: Path | None = None
    """The director's root key (PEM; default ``data_dir/keys/director-online.pem``,
    generated 0600 when missing). Before per-role keys it signed every role."""
    director_targets_key: Path | None = None
    """Director targets key; default ``data_dir/keys/director-targets.pem``."""
    director_snapshot_key: Path | None = None
    """Director snapshot key; default ``data_dir/keys/director-snapshot.pem``."""
    director_timestamp_key: Path | None = None
    """Director timestamp key; default ``data_dir/keys/director-timestamp.pem``.
    ``redstone-cloud director rotate-keys`` replaces these files in place and keeps the
    old keys in ``data_dir/keys/retired``."""
    image_online_key: Path | None = None
    """Development only: sign uploaded packages into the image repository with this
    online key (created on first use). Production signs offline and uploads."""
    delta_interval_s: float = 10.0
    """How often ``serve`` looks for queued delta jobs; 0 leaves them to ``deltas run``."""
    delta_workers: int = 1
    """Delta jobs made at a time, each a child process using one core and, for a 1 GiB
    image, up to about 1 GiB of memory (docs/delta.md §4); several ``serve`` processes
    or hosts share one queue safely."""
    delta_min_saving: float = 0.1
    """A delta is kept only if it is at least this share smaller than its full image
    (0.1: at most 90 % of its size); otherwise its job ends ``skipped`` and vehicles
    download the full image, which costs no source read and no apply."""
    client_cert_header: str = ""
    """Behind a TLS-terminating proxy: header carrying the URL-escaped client certificate
    PEM (nginx ``$ssl_client_escaped_cert``). Empty: only the server's own TLS counts."""
    api_docs: bool = False
    """Serve ``/docs``, ``/redoc`` and ``/openapi.json`` (off in production; the document
    is always available from ``redstone-cloud openapi``)."""
    metrics: Literal["admin", "open", "off"] = "admin"
    """``GET /metrics`` in the Prometheus text format (docs/operations.md §5): ``admin``
    answers a request bearing an admin's token or a ``metrics_readers`` token, ``open``
    anyone (scrape over a private network only), ``off`` serves no route and counts
    nothing."""
    metrics_readers: list[MetricsReader] = field(default_factory=list)
    """Read-only tokens for ``/metrics`` (``redstone-cloud admin token NAME --metrics``)."""
    device_download_scope: Literal["assignment", "any"] = "assignment"
    """``assignment`` (default): a vehicle downloads only the targets its director
    metadata names (its images, or the deltas signed in their place); ``any``: every
    registered vehicle downloads every package (a lab's choice, never production's;
    operators fetch any package with the admin route ``GET /api/v1/targets/<target>``)."""
    device_events_per_hour: int = 3600
    """Per-vehicle event budget (a token bucket refilled continuously); over it: 429."""
    device_event_bytes_per_hour: int = 16 * 1024**2
    device_logs_per_hour: int = 120
    device_log_bytes_per_hour: int = 64 * 1024**2
    header_timeout_s: float = 10.0
    """A connection must deliver a request's complete headers this soon after it opens
    or after its previous answer (slow-loris connections are closed)."""
    idle_timeout_s: float = 15.0
    """Keep-alive connections idle longer than this are closed."""
    console: ConsoleSettings = field(default_factory=ConsoleSettings)

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def key_dir(self) -> Path:
        return self.data_dir / "keys"


def load_settings(path: Path | None) -> Settings:
    """Settings from the ``[cloud]`` table of ``path``, or the defaults."""
    if path is None:
        return Settings()
    return load(path, Settings, section="cloud")


def token_digest(token: str) -> str:
    """How admin tokens are compared: by SHA-256, so the config holds no secret."""
    return hashlib.sha256(token.encode()).hexdigest()
