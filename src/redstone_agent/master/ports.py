"""How the campaign engine reaches the world: one narrow port per concern.

The engine (``master/engine.py``) only decides; everything it touches comes in
through these interfaces, so tests drive it with real ECUs or with doubles and
the daemon wires the real adapters (``master/adapters.py``, ``master/ecu_sub.py``,
``master/ecu_uds.py``).

Every :class:`EcuPort` operation is **idempotent and convergent**: it first
asks the ECU where it stands and only does what is still missing. That is what
lets :meth:`Engine.recover` re-run the journaled phase after a SIGKILL without
knowing how far the killed Master got.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

ProgressFn = Callable[[int, int], None]
"""``(bytes_done, bytes_total)`` of the ECU's current step."""


@dataclass(frozen=True)
class Image:
    """A verified image in the Master's cache, as an ECU port needs it."""

    target: str
    """Uptane target name (what the ECU manifest reports once it runs)."""
    sha256: str
    length: int
    version: str
    """The image's version (image-repository ``custom.version``, else the target name):
    what a UDS ECU reports after the flash."""
    path: Path
    """Complete, hash-checked file in the cache (UDS ports read it)."""
    url: str
    """Where Subs download it from (the in-vehicle cache server)."""
    release_counter: int = 0
    """Signed anti-rollback counter (UDS ports report it in the ECU's manifest)."""


@dataclass(frozen=True)
class DeltaImage:
    """A verified delta that turns the ECU's installed image into :attr:`EcuJob.new`."""

    target: str
    sha256: str
    length: int
    source_sha256: str
    path: Path
    url: str


@dataclass(frozen=True)
class EcuJob:
    """Everything one ECU needs for one campaign; rebuilt identically after a restart."""

    serial: str
    new: Image
    previous: Image | None = None
    """UDS: what to flash back on rollback (downloaded before any ECU is touched)."""
    delta: DeltaImage | None = None
    bundle: bytes = b""
    """Sub: the exact Uptane metadata the Master verified (the Sub verifies it again)."""
    bundle_url: str = ""


class EcuStanding(StrEnum):
    """Where an ECU stands relative to its job (what recovery and reports need)."""

    OLD = "old"
    """Runs its previous image, nothing pending."""
    INSTALLING = "installing"
    INSTALLED = "installed"
    """New image written (Sub: READY; inactive slot), old one still runs."""
    TRIAL = "trial"
    """New image runs and passed its health check, not yet committed."""
    NEW = "new"
    """New image runs, committed."""
    FAILED = "failed"
    """Neither settled old nor new (e.g. a UDS ECU left in its bootloader)."""


@dataclass(frozen=True)
class StepResult:
    """What an ECU operation did, for the campaign report."""

    detail: str = ""
    bytes_sent: int = 0
    """Bytes moved to the ECU (delta or full image)."""
    used_delta: bool = False


class EcuPort(Protocol):
    """One ECU of the vehicle, whatever its transport. Operations are idempotent."""

    serial: str

    async def manifest(self, nonce: str) -> dict[str, Any]:
        """The ECU's signed version manifest envelope (JSON object) carrying ``nonce``."""
        ...

    async def standing(self, job: EcuJob) -> EcuStanding:
        """Ask the ECU where it stands with respect to ``job``."""
        ...

    async def install(self, job: EcuJob, progress: ProgressFn) -> StepResult:
        """Write ``job.new`` without making it the running image where the ECU has
        A/B slots (Sub); UDS ECUs are flashed, reset and verified here. Raises
        :class:`EcuFailed` with one line when the ECU refuses or fails."""
        ...

    async def activate(self, job: EcuJob) -> StepResult:
        """Run the new image; return once it is up and healthy (not yet committed)."""
        ...

    async def commit(self, job: EcuJob) -> StepResult:
        """Make the running new image permanent."""
        ...

    async def rollback(self, job: EcuJob) -> StepResult:
        """Return the ECU to its previous image, from whatever step it is in."""
        ...


@dataclass(frozen=True)
class TBoxBoot:
    """Where the TBox's own reboot left it with respect to its job."""

    standing: EcuStanding
    """INSTALLED: the new slot is primed, the reboot has not happened; TRIAL: runs the
    new slot, not committed; NEW: committed; FAILED: runs the new slot, which was
    rejected (the reboot back is pending); OLD: runs the old slot and the new one will
    not be tried again (rejected, or the bootloader fell back)."""
    reason: str = ""
    """For OLD: the slot layer's account of the fallback ("" when it has none)."""


class SelfUpdatePort(EcuPort, Protocol):
    """The TBox's own rootfs slots: an :class:`EcuPort` whose ``activate`` only checks the
    new slot is primed (the engine reboots), plus what the reboot needs."""

    async def boot(self, job: EcuJob) -> TBoxBoot:
        """Where the TBox stands after (or before) its reboot into ``job.new``."""
        ...

    async def reject(self, job: EcuJob, reason: str) -> None:
        """Mark the running trial slot bad: the next boot returns to the old slot."""
        ...


HealthFn = Callable[[], Awaitable[tuple[bool, str]]]
"""One check: (passed, one line saying what was seen)."""


@dataclass(frozen=True)
class HealthCheck:
    name: str
    run: HealthFn


@dataclass(frozen=True)
class SelfUpdate:
    """What the engine needs to update the TBox itself (``[master.self]``)."""

    reboot: Callable[[], Awaitable[None]]
    """Ask the system to reboot (``reboot-command``); returns once asked."""
    checks: Sequence[HealthCheck] = ()
    """The new image's health check (units, cloud, a command), all must pass."""
    ecus_answer: bool = True
    """Also check that every other ECU of the campaign answers and runs its new image."""
    timeout_s: float = 300.0
    """How long the checks may keep failing before the new image is rejected."""
    interval_s: float = 5.0


class Decision(StrEnum):
    ALLOW = "allow"
    WAIT = "wait"
    REFUSE = "refuse"


class Cause(StrEnum):
    """What a verdict stems from (the engine reports consent events from it)."""

    NONE = ""
    CONSENT = "consent"
    """The driver's answer: waiting for it, given, or declined."""
    POSTPONED = "postponed"
    """The driver postponed; the policy asks again when the time is up."""
    VEHICLE = "vehicle"
    """A vehicle-state rule (CAN signals) does not hold."""
    USER = "user"
    """An operator's cancel or rollback command."""


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    reason: str = ""
    """One line; for a broken rule the rule and its live value."""
    cause: Cause = Cause.NONE


class Gate(StrEnum):
    """Moments the engine asks the policy before it goes on."""

    DOWNLOAD = "download"
    """Before the images are downloaded (download-heavy work)."""
    INSTALL = "install"
    """Once, before any ECU is touched (consent in mode ``ask``)."""
    FLASH = "flash"
    """Before each UDS flash: the ECU is out of service while it runs."""
    ACTIVATE = "activate"
    """Before each ECU switches to its new image (a Sub reboots)."""
    RESTORE = "restore"
    """Before a touched ECU is rolled back: the vehicle's rules only, never consent
    or a cancel (a rollback must not be refused, only wait until it is safe)."""


class Policy(Protocol):
    """Consent, vehicle-state preconditions and the user's commands:
    allowed now, wait, or refuse. Also asked *during* a UDS flash or an
    activation (``watched``), so a broken rule postpones the ECUs not yet started."""

    async def check(self, gate: Gate, campaign: str, consent_required: bool) -> Verdict: ...

    async def wait_change(self, timeout_s: float) -> None:
        """Return when an answer may have changed (a signal, a consent, a command),
        or after ``timeout_s``; the engine then asks :meth:`check` again."""
        ...


@dataclass(frozen=True)
class OfferedCampaign:
    """The cloud's offer (poll answer), before any verification."""

    campaign: str
    consent_required: bool
    ecus: Mapping[str, str]
    """ECU serial -> offered target name."""
    release_notes_url: str = ""


@dataclass(frozen=True)
class VerifiedCampaign:
    """Both repositories verified and cross-checked; what the engine may act on."""

    targets: Mapping[str, Image]
    """Per ECU serial: the new image (not yet downloaded: path/url are where it will be)."""
    previous: Mapping[str, Image] = field(default_factory=dict)
    """UDS ECU serial -> image to flash back on rollback."""
    deltas: Mapping[str, DeltaImage] = field(default_factory=dict)
    bundle: bytes = b""
    bundle_url: str = ""


@dataclass(frozen=True)
class Fetched:
    """Per ECU, what its images cost on the cloud link."""

    downloaded: int
    """Bytes downloaded now (0 when the cache already had them)."""
    saved: int = 0
    """Bytes a delta saved: full image length minus delta length."""


class CloudPort(Protocol):
    """The backend as the engine needs it (HTTP, mTLS and retries live behind it)."""

    async def poll(self) -> OfferedCampaign | None: ...

    async def report_manifest(self) -> Mapping[str, str]:
        """Collect every ECU's manifest with a fresh nonce, sign and upload the vehicle's;
        return ECU serial -> the target it reports running ("" when unknown)."""
        ...

    async def collect_running(self) -> Mapping[str, str]:
        """What every ECU reports running, asked locally without the cloud
        (an offline bundle installs where there is no coverage)."""
        ...

    async def event(
        self, kind: str, campaign: str | None, ecu_serial: str = "", **detail: Any
    ) -> None:
        """Best effort: a lost event never stops a campaign (manifests are the truth)."""
        ...


class TrustPort(Protocol):
    """Uptane full verification and the verified downloads into the cache."""

    async def verify(self, offer: OfferedCampaign, running: Mapping[str, str]) -> VerifiedCampaign:
        """Verify both repositories; ``running`` (serial -> target it runs now, from the
        manifests) names the images UDS ECUs must be able to get back."""
        ...

    async def fetch(
        self, campaign: VerifiedCampaign, progress: ProgressFn
    ) -> Mapping[str, Fetched]:
        """Download every image the campaign needs into the cache (resuming).
        Raises a one-line error when the cache cannot hold them."""
        ...


Clock = Callable[[], float]
"""Monotonic seconds (durations in the report)."""
