"""What the Master journals: the campaign record and the verified plan (docs/master.md §3).

Two files in the state directory, both written with ``journal.atomic_write``
semantics (tmp + fsync + rename + fsync dir):

* ``campaign.json`` — :class:`CampaignRecord`, rewritten *before* every
  transition acts (write-ahead);
* ``plan.json`` — :class:`~redstone_agent.master.ports.VerifiedCampaign`,
  written once when verification succeeded, so a restarted Master rebuilds
  every ECU job byte for byte without asking the cloud again.
"""

from __future__ import annotations

import base64
import re
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

from redstone_agent.master.ports import DeltaImage, Image, VerifiedCampaign
from redstone_agent.master.states import CampaignState

DELTA_NAME = re.compile(r"(?P<image>.+)\.from-[0-9a-f]{16}\.rsdelta")
"""How the backend names a delta target (docs/api.md §4.2)."""


def image_name(target: str) -> str:
    """The image a target name stands for: a delta's name reduced to the image it produces.

    Reports speak of images ("adas-2.0.0"), whether the director sent the
    image or a delta to it ("adas-2.0.0.from-20be3d0735c4694d.rsdelta").
    """
    match = DELTA_NAME.fullmatch(target)
    return match.group("image") if match else target


class EcuOutcome(StrEnum):
    PENDING = "pending"
    UPDATED = "updated"
    ROLLED_BACK = "rolled-back"
    UNCHANGED = "unchanged"
    FAILED = "failed"


@dataclass
class EcuRecord:
    """One ECU's part in the campaign (a row of the final report)."""

    serial: str
    kind: str
    transport: str
    old: str = ""
    """Target (or version) the ECU ran when the campaign began."""
    new: str = ""
    step: str = "pending"
    """Last step it finished or is in: pending, installing, installed, activating,
    trial, committed, rolling-back, rolled-back, failed."""
    outcome: EcuOutcome = EcuOutcome.PENDING
    detail: str = ""
    seconds: float = 0.0
    bytes_downloaded: int = 0
    bytes_saved: int = 0
    """Image length minus what was actually moved (a delta instead of the image)."""
    bytes_done: int = 0
    bytes_total: int = 0
    switched: bool = False
    """Told to switch to its new image in this campaign (sticky: a Master that restarts on
    the trial boot, or after it, still knows the ECU went through its switch)."""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["outcome"] = self.outcome.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EcuRecord:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["outcome"] = EcuOutcome(values.get("outcome", "pending"))
        return cls(**values)

    def report_row(self) -> dict[str, Any]:
        return {
            "serial": self.serial,
            "kind": self.kind,
            "transport": self.transport,
            "old": self.old,
            "new": self.new,
            "outcome": self.outcome.value,
            "seconds": round(self.seconds, 1),
            "bytes_downloaded": self.bytes_downloaded,
            "bytes_saved": self.bytes_saved,
            "detail": self.detail,
        }


@dataclass
class CampaignRecord:
    """Everything the Master must remember across a kill (``campaign.json``)."""

    state: CampaignState = CampaignState.IDLE
    seq: int = 0
    campaign: str = ""
    consent_required: bool = False
    detail: str = ""
    error: str = ""
    """One line: why the campaign failed or rolled back ("" while all is well)."""
    ecus: dict[str, EcuRecord] = field(default_factory=dict)
    last_report: dict[str, Any] | None = None
    blocked_by: str = ""
    """One line while the campaign waits: the failing precondition with its live value,
    or the consent it waits for ("" when nothing blocks it)."""
    source: str = ""
    """Where the campaign came from: "" for the cloud, else the offline bundle's path."""
    release_notes_url: str = ""
    consent: str = ""
    """The driver's answer as reported: "", asked, postponed, given, denied."""
    diagnostics: dict[str, Any] = field(default_factory=dict)
    """UDS diagnostics around the campaign (``master/diagnostics.py``): the
    snapshot taken before any ECU was touched, then the diff after the end."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "seq": self.seq,
            "campaign": self.campaign,
            "consent_required": self.consent_required,
            "detail": self.detail,
            "error": self.error,
            "ecus": {s: e.to_dict() for s, e in self.ecus.items()},
            "last_report": self.last_report,
            "blocked_by": self.blocked_by,
            "source": self.source,
            "release_notes_url": self.release_notes_url,
            "consent": self.consent,
            "diagnostics": self.diagnostics,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CampaignRecord:
        return cls(
            state=CampaignState(data["state"]),
            seq=int(data["seq"]),
            campaign=str(data["campaign"]),
            consent_required=bool(data.get("consent_required", False)),
            detail=str(data.get("detail", "")),
            error=str(data.get("error", "")),
            ecus={s: EcuRecord.from_dict(e) for s, e in data.get("ecus", {}).items()},
            last_report=data.get("last_report"),
            blocked_by=str(data.get("blocked_by", "")),
            source=str(data.get("source", "")),
            release_notes_url=str(data.get("release_notes_url", "")),
            consent=str(data.get("consent", "")),
            diagnostics=dict(data.get("diagnostics") or {}),
        )

    def report(self, outcome: str) -> dict[str, Any]:
        """The final report (``redstone-master status``, the cloud event, the demo table)."""
        return {
            "campaign": self.campaign,
            "outcome": outcome,
            "detail": self.error or self.detail,
            "ecus": [e.report_row() for e in self.ecus.values()],
            "diagnostics": self.diagnostics.get("report"),
        }


def _image_to_dict(image: Image | DeltaImage) -> dict[str, Any]:
    data = asdict(image)
    data["path"] = str(image.path)
    return data


def plan_to_dict(plan: VerifiedCampaign) -> dict[str, Any]:
    return {
        "targets": {s: _image_to_dict(i) for s, i in plan.targets.items()},
        "previous": {s: _image_to_dict(i) for s, i in plan.previous.items()},
        "deltas": {s: _image_to_dict(i) for s, i in plan.deltas.items()},
        "bundle": base64.b64encode(plan.bundle).decode("ascii"),
        "bundle_url": plan.bundle_url,
    }


def plan_from_dict(data: dict[str, Any]) -> VerifiedCampaign:
    def image(d: dict[str, Any]) -> Image:
        return Image(**{**d, "path": Path(d["path"])})

    def delta(d: dict[str, Any]) -> DeltaImage:
        return DeltaImage(**{**d, "path": Path(d["path"])})

    return VerifiedCampaign(
        targets={s: image(d) for s, d in data["targets"].items()},
        previous={s: image(d) for s, d in data["previous"].items()},
        deltas={s: delta(d) for s, d in data["deltas"].items()},
        bundle=base64.b64decode(data["bundle"]),
        bundle_url=str(data["bundle_url"]),
    )
