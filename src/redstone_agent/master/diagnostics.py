"""UDS diagnostics around a campaign: what the update changed in versions and DTCs.

The pure rules (no I/O; the ports do that, ``master/ecu_uds.py``):

1. Before any ECU is touched the engine takes a :class:`Snapshot` — per UDS ECU
   its software-version DIDs and the DTCs matching ``[master.diagnostics]
   dtc-status-mask`` (default 0x09, testFailed | confirmedDTC) — and journals it
   (:meth:`Snapshot.to_dict`), so a Master killed mid-campaign still compares
   against the state before the campaign, not against one taken halfway.
2. After the campaign ends it takes another and calls :func:`diff`. A DTC
   **appeared** when its code was not reported before (:attr:`Change.NEW`) or
   its status gained testFailed or confirmedDTC (:attr:`Change.ESCALATED`);
   it was **cleared** when reported before and not after. Versions are
   compared DID by DID.
3. An ECU that did not answer before or after (``EcuDiagnosis.error``) has no
   DTC comparison — nothing is attributed to the update, and so nothing of it
   is cleared — only ``unknown`` saying why.
4. With ``clear-new-dtcs`` the engine clears exactly :attr:`DtcDiff.new_dtcs`
   (ClearDiagnosticInformation per DTC). :func:`report` is the campaign report's
   ``diagnostics`` entry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from redstone_agent.uds.diagnostics import (
    CONFIRMED_DTC,
    DEFAULT_STATUS_MASK,
    TEST_FAILED,
    Dtc,
)

log = logging.getLogger(__name__)

ESCALATION_BITS = TEST_FAILED | CONFIRMED_DTC
"""A known DTC that gains one of these bits during the update counts as appeared."""


def _one_line(text: str) -> str:
    return " ".join(text.split())


@dataclass(frozen=True)
class EcuDiagnosis:
    """One ECU at one moment: software versions by DID (``0xF189``) and matching DTCs."""

    serial: str
    versions: dict[str, str] = field(default_factory=dict)
    dtcs: tuple[Dtc, ...] = ()
    error: str = ""
    """One line when the ECU did not answer (fully or in part); its DTCs are then unknown."""

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "serial": self.serial,
            "versions": dict(self.versions),
            "dtcs": [d.to_dict() for d in self.dtcs],
        }
        if self.error:
            data["error"] = self.error
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EcuDiagnosis:
        return cls(
            serial=str(data["serial"]),
            versions={str(k): str(v) for k, v in dict(data.get("versions") or {}).items()},
            dtcs=tuple(Dtc.from_dict(d) for d in data.get("dtcs") or ()),
            error=str(data.get("error", "")),
        )


@dataclass(frozen=True)
class Snapshot:
    """Every diagnosed ECU at one moment, by serial."""

    ecus: dict[str, EcuDiagnosis] = field(default_factory=dict)
    status_mask: int = DEFAULT_STATUS_MASK
    """The reportDTCByStatusMask mask the DTCs were read with."""

    @classmethod
    def of(
        cls, diagnoses: Iterable[EcuDiagnosis], status_mask: int = DEFAULT_STATUS_MASK
    ) -> Snapshot:
        return cls({d.serial: d for d in diagnoses}, status_mask)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status_mask": self.status_mask,
            "ecus": {serial: d.to_dict() for serial, d in self.ecus.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Snapshot:
        ecus = dict(data.get("ecus") or {})
        return cls(
            {str(s): EcuDiagnosis.from_dict(d) for s, d in ecus.items()},
            int(data.get("status_mask", DEFAULT_STATUS_MASK)),
        )


class Change(StrEnum):
    NEW = "new"
    """Not reported before the campaign, reported after it."""
    ESCALATED = "escalated"
    """Reported before, and its status gained testFailed or confirmedDTC."""
    CLEARED = "cleared"
    """Reported before, not any more."""


@dataclass(frozen=True)
class DtcChange:
    code: int
    change: Change
    before: int | None
    """Status byte before (None: not reported)."""
    after: int | None
    """Status byte after (None: not reported)."""

    def to_dict(self) -> dict[str, Any]:
        dtc = Dtc(self.code, 0)
        return {
            "code": dtc.hex,
            "display": dtc.display,
            "change": self.change.value,
            "status_before": None if self.before is None else f"0x{self.before:02X}",
            "status_after": None if self.after is None else f"0x{self.after:02X}",
        }


@dataclass(frozen=True)
class VersionChange:
    did: str
    """``0xF189``."""
    before: str | None
    after: str | None


@dataclass(frozen=True)
class EcuDiff:
    """What changed on one ECU between the two snapshots."""

    serial: str
    appeared: tuple[DtcChange, ...] = ()
    cleared: tuple[DtcChange, ...] = ()
    versions: tuple[VersionChange, ...] = ()
    unknown: str = ""
    """Why the DTCs were not compared (not diagnosed, or did not answer), else ""."""

    @property
    def new_codes(self) -> list[int]:
        return [c.code for c in self.appeared]


@dataclass(frozen=True)
class DtcDiff:
    """Per ECU serial, what the campaign changed."""

    ecus: dict[str, EcuDiff] = field(default_factory=dict)

    @property
    def new_dtcs(self) -> dict[str, list[int]]:
        """Serial → codes of the DTCs that appeared (what ``clear-new-dtcs`` clears)."""
        return {s: e.new_codes for s, e in self.ecus.items() if e.appeared}

    @property
    def has_new_dtcs(self) -> bool:
        return any(e.appeared for e in self.ecus.values())


def diff(before: Snapshot, after: Snapshot) -> DtcDiff:
    """Compare two snapshots ECU by ECU (every serial of either)."""
    serials = list(dict.fromkeys([*before.ecus, *after.ecus]))
    return DtcDiff({s: _diff_ecu(s, before.ecus.get(s), after.ecus.get(s)) for s in serials})


def _diff_ecu(serial: str, before: EcuDiagnosis | None, after: EcuDiagnosis | None) -> EcuDiff:
    why = [
        f"{moment}: {_gap(diagnosis)}"
        for moment, diagnosis in (("before", before), ("after", after))
        if diagnosis is None or diagnosis.error
    ]
    versions = _version_changes(
        before.versions if before else {}, after.versions if after else {}, complete=not why
    )
    if why or before is None or after is None:
        return EcuDiff(serial, versions=versions, unknown="; ".join(why))
    old = {d.code: d.status for d in before.dtcs}
    new = {d.code: d.status for d in after.dtcs}
    appeared = tuple(
        DtcChange(code, Change.NEW if code not in old else Change.ESCALATED, old.get(code), status)
        for code, status in sorted(new.items())
        if code not in old or status & ~old[code] & ESCALATION_BITS
    )
    cleared = tuple(
        DtcChange(code, Change.CLEARED, status, None)
        for code, status in sorted(old.items())
        if code not in new
    )
    return EcuDiff(serial, appeared, cleared, versions)


def _gap(diagnosis: EcuDiagnosis | None) -> str:
    return "not diagnosed" if diagnosis is None else diagnosis.error


def _version_changes(
    before: Mapping[str, str], after: Mapping[str, str], *, complete: bool
) -> tuple[VersionChange, ...]:
    """Every DID whose value differs; with an incomplete side only DIDs both sides read."""
    dids = dict.fromkeys([*before, *after]) if complete else [d for d in before if d in after]
    return tuple(
        VersionChange(did, before.get(did), after.get(did))
        for did in sorted(dids)
        if before.get(did) != after.get(did)
    )


def report(diff: DtcDiff) -> dict[str, Any]:
    """The campaign report's ``diagnostics`` entry (JSON)."""
    ecus: dict[str, Any] = {}
    for serial, ecu in diff.ecus.items():
        entry: dict[str, Any] = {
            "appeared": [c.to_dict() for c in ecu.appeared],
            "cleared": [c.to_dict() for c in ecu.cleared],
            "versions": {v.did: {"before": v.before, "after": v.after} for v in ecu.versions},
        }
        if ecu.unknown:
            entry["unknown"] = ecu.unknown
        ecus[serial] = entry
    return {
        "new_dtcs": sum(len(e.appeared) for e in diff.ecus.values()),
        "summary": summary(diff),
        "ecus": ecus,
    }


def summary(diff: DtcDiff) -> str:
    """One line for events and the console: the new DTCs, or that there are none."""
    new = [
        f"{serial} {Dtc(change.code, 0).display}"
        for serial, ecu in diff.ecus.items()
        for change in ecu.appeared
    ]
    unknown = [serial for serial, ecu in diff.ecus.items() if ecu.unknown]
    text = f"{len(new)} new DTC{'s' if len(new) != 1 else ''}"
    if new:
        text += ": " + ", ".join(new)
    if unknown:
        text += f" (not compared: {', '.join(unknown)})"
    return text


class DiagnosticPort(Protocol):
    """An ECU the Master can diagnose (UDS ECUs: ``master/ecu_uds.py``'s ``UdsPort``)."""

    serial: str

    async def diagnose(self, status_mask: int) -> EcuDiagnosis:
        """Versions and the DTCs matching ``status_mask``. Never raises: an ECU that does
        not answer gives a diagnosis with ``error`` set (one line)."""
        ...

    async def clear_dtcs(self, codes: list[int]) -> None:
        """ClearDiagnosticInformation of each code. Raises a one-line RedstoneError when
        the ECU refuses or does not answer (the caller reports it and goes on)."""
        ...


async def take_snapshot(ports: Iterable[DiagnosticPort], status_mask: int) -> Snapshot:
    """Diagnose every port concurrently; a port that raises anyway counts as unanswered."""
    ports = list(ports)
    results = await asyncio.gather(
        *(p.diagnose(status_mask) for p in ports), return_exceptions=True
    )
    diagnoses = []
    for port, result in zip(ports, results, strict=True):
        if isinstance(result, EcuDiagnosis):
            diagnoses.append(result)
        elif isinstance(result, Exception):
            log.error("%s: diagnosis failed: %s", port.serial, result)
            diagnoses.append(EcuDiagnosis(port.serial, error=_one_line(str(result))))
        else:  # CancelledError and other BaseExceptions are not ours to swallow
            raise result
    return Snapshot.of(diagnoses, status_mask)


async def clear_new_dtcs(ports: Mapping[str, DiagnosticPort], diff: DtcDiff) -> dict[str, str]:
    """Clear the DTCs that appeared, ECU by ECU; serial → one line of what happened."""
    outcome: dict[str, str] = {}
    for serial, codes in diff.new_dtcs.items():
        port = ports.get(serial)
        if port is None:
            outcome[serial] = "not cleared: no diagnostic port"
            continue
        try:
            await port.clear_dtcs(codes)
        except Exception as exc:  # one ECU's refusal must not stop the others or the campaign
            outcome[serial] = f"not cleared: {_one_line(str(exc))}"
        else:
            outcome[serial] = f"cleared {', '.join(Dtc(c, 0).display for c in codes)}"
    return outcome
