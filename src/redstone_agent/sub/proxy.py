"""UDS ECUs behind this Sub: what to do when, decided without I/O (docs/someip.md §11).

A domain controller that owns a legacy ECU's bus flashes it on the Master's
behalf. This module holds the rules; ``sub/proxied.py`` does the fetching,
verifying and flashing and journals through :class:`Record`.

Which command is allowed when (``ALLOWED``), read as the spec:

============  ==========================================
command       allowed in (that ECU's ``ProxiedState``)
============  ==========================================
ProxyInstall  Idle, Installed, RolledBack, Failed
ProxyRollback Idle, Installed, RolledBack, Failed
============  ==========================================

What a restart does with a journaled state (``ON_RESTART``): Downloading and
Flashing re-run the install from the metadata check (the ECU's version is read
first, so an ECU that already runs the new image is not flashed again);
RollingBack re-runs the rollback; the settled states stay.

The image a rollback restores (:func:`rollback_goal`) is the previous image
the last install carried, else what the ECU ran when that install was
accepted; :func:`rollback_action` decides from the version the ECU reports.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from typing import Any

from redstone_agent.someip.interface import PROXIED_SETTLED, ProxiedState, ResultCode
from redstone_agent.someip.messages import ProxiedImage, ProxiedStatus, ProxyInstallRequest
from redstone_agent.sub.errors import VerificationFailed, WrongState
from redstone_agent.sub.trust import Assignment
from redstone_agent.uds.rollback import Outcome
from redstone_agent.uds.running import Installed, describe_outcome, reported_image

P = ProxiedState


class Command(Enum):
    INSTALL = "ProxyInstall"
    ROLLBACK = "ProxyRollback"


ALLOWED: dict[Command, frozenset[ProxiedState]] = {
    Command.INSTALL: PROXIED_SETTLED,
    Command.ROLLBACK: PROXIED_SETTLED,
}


def require(command: Command, serial: str, state: ProxiedState) -> None:
    """Raise :class:`WrongState` unless *command* is allowed for the ECU in *state*."""
    if state not in ALLOWED[command]:
        allowed = ", ".join(sorted(s.name for s in ALLOWED[command]))
        raise WrongState(
            f"{command.value} for {serial} not allowed in {state.name} (only in {allowed})"
        )


class Resume(Enum):
    NOTHING = "nothing"
    INSTALL = "re-run the install"
    ROLLBACK = "re-run the rollback"


ON_RESTART: dict[ProxiedState, Resume] = {
    P.IDLE: Resume.NOTHING,
    P.DOWNLOADING: Resume.INSTALL,
    P.FLASHING: Resume.INSTALL,
    P.INSTALLED: Resume.NOTHING,
    P.ROLLING_BACK: Resume.ROLLBACK,
    P.ROLLED_BACK: Resume.NOTHING,
    P.FAILED: Resume.NOTHING,
}

BUSY = frozenset(ON_RESTART) - PROXIED_SETTLED
"""States in which the ECU belongs to an operation: never read or flashed by another."""


@dataclass(frozen=True)
class JobImage:
    """An image of an accepted ProxyInstall, as journaled (sha256 as hex)."""

    target: str
    url: str
    sha256: str
    length: int
    version: str
    release_counter: int

    @classmethod
    def of(cls, image: ProxiedImage) -> JobImage:
        return cls(
            image.target,
            image.url,
            image.sha256.hex(),
            image.length,
            image.version,
            image.release_counter,
        )


@dataclass(frozen=True)
class Job:
    """An accepted ProxyInstall (journaled before anything is fetched)."""

    image: JobImage
    previous: JobImage | None
    metadata_url: str
    metadata_sha256: str
    metadata_length: int

    @classmethod
    def of(cls, request: ProxyInstallRequest) -> Job:
        previous = request.previous
        return cls(
            JobImage.of(request.image),
            None if previous is None else JobImage.of(previous),
            request.metadata.url,
            request.metadata.sha256.hex(),
            request.metadata.length,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        fields = dict(data)
        fields["image"] = JobImage(**fields["image"])
        if fields.get("previous") is not None:
            fields["previous"] = JobImage(**fields["previous"])
        return cls(**fields)


@dataclass
class Record:
    """One proxied ECU's journal: ``<state-dir>/proxied/<serial>/ecu.json``."""

    running: Installed
    state: ProxiedState = P.IDLE
    seq: int = 0
    version: str = ""
    """The version DID when last read ("" unread or unreadable)."""
    target: str = ""
    """Target of the operation under way, or of the last one."""
    job: Job | None = None
    """The last accepted ProxyInstall (kept after it ended: the rollback needs it)."""
    before: Installed | None = None
    """What the ECU ran when ``job`` was accepted."""
    flashed: bool = False
    """``job`` passed every check and reached the ECU: it may run the new image (or
    be left in its bootloader). Until then a rollback has nothing to undo."""
    error: ResultCode = ResultCode.OK
    detail: str = ""
    bytes_done: int = 0
    bytes_total: int = 0

    def status(self, serial: str) -> ProxiedStatus:
        return ProxiedStatus(
            serial,
            self.state,
            self.seq,
            self.target,
            self.running.target,
            self.version,
            self.bytes_done,
            self.bytes_total,
            self.error,
            self.detail,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "running": dataclasses.asdict(self.running),
            "state": self.state.name,
            "seq": self.seq,
            "version": self.version,
            "target": self.target,
            "job": None if self.job is None else self.job.to_dict(),
            "before": None if self.before is None else dataclasses.asdict(self.before),
            "flashed": self.flashed,
            "error": self.error.name,
            "detail": self.detail,
            "bytes_done": self.bytes_done,
            "bytes_total": self.bytes_total,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        fields = dict(data)
        fields["running"] = Installed(**fields["running"])
        fields["state"] = ProxiedState[fields["state"]]
        fields["error"] = ResultCode[fields["error"]]
        if fields.get("job") is not None:
            fields["job"] = Job.from_dict(fields["job"])
        if fields.get("before") is not None:
            fields["before"] = Installed(**fields["before"])
        return cls(**fields)


# -- verification ---------------------------------------------------------------------


@dataclass(frozen=True)
class Signed:
    """An image-repository entry, verified (full verification only)."""

    target: str
    length: int
    sha256: str
    hardware_ids: tuple[str, ...]
    version: str
    """``custom.version``, "" when the entry has none."""


def check_install(
    serial: str,
    hardware_id: str,
    job: Job,
    assignment: Assignment,
    running: Installed,
    *,
    signed_new: Signed | None,
    signed_previous: Signed | None,
) -> None:
    """Refuse (VerificationFailed, one line) a job that is not exactly what the verified
    metadata allows: the director's assignment for ``serial``, and as previous image only
    the one the ECU runs (docs/someip.md §11, "What the Sub verifies").

    ``signed_new``/``signed_previous`` are the image repository's entries of the two
    targets (None: not verified that way — partial verification, or no such entry).
    """
    image, problems = job.image, []
    if image.target != assignment.filename:
        problems.append(f"target {image.target!r} is not the assigned {assignment.filename!r}")
    if assignment.delta_source_sha256 is not None:
        problems.append("the director assigns a delta; a UDS ECU takes whole images")
    if image.length != assignment.length:
        problems.append(f"length {image.length} != verified {assignment.length}")
    if image.sha256 != assignment.sha256:
        problems.append("sha256 differs from the verified hash")
    if image.release_counter != assignment.release_counter:
        problems.append(
            f"release counter {image.release_counter} != verified {assignment.release_counter}"
        )
    if signed_new is not None:
        expected = signed_new.version or signed_new.target
        if image.version != expected:
            problems.append(f"version {image.version!r} is not the signed {expected!r}")
    if job.previous is not None:
        problems += _previous_problems(job.previous, running, hardware_id, signed_previous)
    if problems:
        raise VerificationFailed(f"install into {serial} refused: " + "; ".join(problems))


def _previous_problems(
    previous: JobImage, running: Installed, hardware_id: str, signed: Signed | None
) -> list[str]:
    name = previous.target
    if running.target and name != running.target:
        return [f"previous image {name!r} is not the one the ECU runs ({running.target!r})"]
    if running.sha256:
        if (previous.length, previous.sha256) != (running.length, running.sha256):
            return [f"previous image {name!r} differs from the one the Sub installed"]
        return []
    if signed is None:
        return [
            f"previous image {name!r} cannot be verified (never installed by this Sub, "
            "and not in the verified image repository)"
        ]
    problems = []
    if (previous.length, previous.sha256) != (signed.length, signed.sha256):
        problems.append(f"previous image {name!r} differs from the image repository's")
    if hardware_id not in signed.hardware_ids:
        problems.append(f"previous image {name!r} is not built for {hardware_id!r}")
    return problems


# -- outcomes -------------------------------------------------------------------------


@dataclass(frozen=True)
class Settled:
    """Where an operation leaves the ECU: the state and what to journal."""

    state: ProxiedState
    running: Installed
    error: ResultCode = ResultCode.OK
    detail: str = ""


def after_flash(
    job: Job, running: Installed, outcome: Outcome, version: str | None, error: str | None
) -> Settled:
    """The state a flash of ``job.image`` ends in (the flasher rolled back by itself on
    failure; its outcome says what runs now)."""
    new = Installed.of(job.image)
    if outcome is Outcome.INSTALLED:
        return Settled(P.INSTALLED, new, detail=f"runs {version or new.version}")
    now = running
    if outcome is Outcome.RESTORED and job.previous is not None:
        now = Installed.of(job.previous)
    what = describe_outcome(
        outcome, version, silent="it reports no version (left in its bootloader)"
    )
    detail = f"flashing {new.version} failed: {error or outcome.value}; {what}"
    return Settled(P.FAILED, now, ResultCode.INSTALL_FAILED, detail)


def rollback_goal(record: Record) -> Installed:
    """The image ProxyRollback restores: the last install's previous image, else what ran
    when that install was accepted, else (no install journaled) what runs."""
    job = record.job
    if job is not None and job.previous is not None:
        return Installed.of(job.previous)
    return record.before or record.running


class RollbackAction(Enum):
    NONE = "none"
    """The ECU already runs the goal, or the last install never reached it."""
    FLASH_PREVIOUS = "flash the previous image"
    SWITCH_BANK = "switch banks"
    IMPOSSIBLE = "impossible"


def rollback_action(
    version: str | None, record: Record, *, has_previous_image: bool, dual_bank: bool
) -> RollbackAction:
    """What ProxyRollback must do, given the version the ECU reports now.

    Nothing when the last install never reached the ECU (it failed its checks or
    its download): switching banks then would go *back* past the running image.
    """
    if not record.flashed:
        return RollbackAction.NONE
    goal = rollback_goal(record)
    new_version = record.job.image.version if record.job is not None else None
    if version and version != new_version and goal.matches(version):
        return RollbackAction.NONE
    if has_previous_image:
        return RollbackAction.FLASH_PREVIOUS
    if dual_bank:
        return RollbackAction.SWITCH_BANK
    return RollbackAction.IMPOSSIBLE


def manifest_image(record: Record, version: str | None) -> tuple[Installed, str]:
    """What the signed manifest names, given the version read now, and why.

    The journaled image only when the ECU's version confirms it; otherwise the
    version read (by default an image's version is its target name) and no hash.
    """
    return reported_image(version, record.running)
