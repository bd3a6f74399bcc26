"""The "new campaign" form, read into a :class:`CampaignSpec` or errors per field.

No I/O: the page hands in the submitted fields (a name may repeat, as checkboxes
do) and the choices it offered; what the service still refuses (a name taken, a
package gone) comes back from :func:`campaigns.create` as a message for the form.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from redstone_cloud.services.campaigns import CampaignSpec, GroupSpec, Targeting

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
VIN = re.compile(r"[A-HJ-NPR-Z0-9]{17}")
CLOCK = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
TARGETS = ("model", "baseline", "vins")
MAX_GROUPS = 10


@dataclass(frozen=True)
class Offered:
    """What the form offered: models, ``model/baseline`` keys with the packages each
    baseline installs, and the image packages."""

    models: Sequence[str]
    baselines: Mapping[str, Sequence[str]]
    packages: Sequence[str]


def _one(fields: Mapping[str, Sequence[str]], name: str) -> str:
    values = fields.get(name, ())
    return values[-1].strip() if values else ""


def _percent(text: str, label: str, errors: dict[str, str], key: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 100:
        errors[key] = f"{label}: a whole number from 0 to 100."
        return 0
    return int(text)


def _groups(text: str, errors: dict[str, str]) -> list[int]:
    """ "10, 50, 100": the cumulative share of vehicles each group reaches."""
    parts = [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]
    if not parts or not all(p.isdigit() for p in parts):
        errors["groups"] = "Give cumulative percentages separated by commas, e.g. 10, 50, 100."
        return []
    values = [int(p) for p in parts]
    if len(values) > MAX_GROUPS:
        errors["groups"] = f"At most {MAX_GROUPS} groups."
    elif values[-1] != 100 or any(not 0 < v <= 100 for v in values):
        errors["groups"] = "Each share is 1 to 100 and the last group reaches 100."
    elif any(b <= a for a, b in itertools.pairwise(values)):
        errors["groups"] = "The shares must grow from group to group."
    return values


def _targeting(
    fields: Mapping[str, Sequence[str]], offered: Offered, errors: dict[str, str]
) -> Targeting | None:
    target = _one(fields, "target")
    model = _one(fields, "target_model")
    if target not in TARGETS:
        errors["target"] = "Choose which vehicles the campaign is for."
        return None
    if target == "vins":
        vins = tuple(v.upper() for v in re.split(r"[\s,;]+", _one(fields, "vins")) if v)
        bad = [v for v in vins if not VIN.fullmatch(v)]
        if not vins:
            errors["vins"] = "List at least one VIN."
        elif bad:
            errors["vins"] = f"Not a VIN: {bad[0][:32]} (17 characters, no I, O or Q)."
        return Targeting(vins=tuple(dict.fromkeys(vins)))
    if model not in offered.models:
        errors["target_model"] = "Choose a vehicle model."
        return None
    if target == "model":
        return Targeting(model=model)
    baseline = _one(fields, "target_baseline")
    if f"{model}/{baseline}" not in offered.baselines:
        errors["target_baseline"] = f"Choose a baseline of {model}."
        return None
    return Targeting(model=model, baseline=baseline)


def _window(
    fields: Mapping[str, Sequence[str]], errors: dict[str, str]
) -> dict[str, object] | None:
    start, end = _one(fields, "window_start"), _one(fields, "window_end")
    days = fields.get("window_days", ())
    if not start and not end:
        return None
    if not CLOCK.fullmatch(start) or not CLOCK.fullmatch(end):
        errors["window"] = "Give the window's start and end as HH:MM (UTC), or neither."
        return None
    if start == end:
        errors["window"] = "The window's start and end are equal: it would never open."
        return None
    chosen = sorted({int(d) for d in days if d.isdigit() and int(d) < len(DAYS)})
    if not chosen:
        errors["window"] = "Tick at least one day for the window."
        return None
    return {"days": chosen, "start": start, "end": end}


def _start_at(text: str, errors: dict[str, str]) -> dt.datetime | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)
    except ValueError:
        errors["start_at"] = "Give a date and time (UTC), e.g. 2026-12-01T02:00."
        return None


def read(
    fields: Mapping[str, Sequence[str]], offered: Offered
) -> tuple[CampaignSpec | None, dict[str, str]]:
    """The spec the form describes, or None and one message per faulty field."""
    errors: dict[str, str] = {}
    name = _one(fields, "name")
    if not NAME.fullmatch(name):
        errors["name"] = "1 to 128 letters, digits, dots, dashes or underscores."
    install = _one(fields, "install")
    if install:
        packages = tuple(offered.baselines.get(install, ()))
        if not packages:
            errors["install"] = "Choose a baseline that installs at least one package."
    else:
        packages = tuple(p for p in fields.get("packages", ()) if p in offered.packages)
        if not packages:
            errors["install"] = "Choose a baseline to install, or at least one package."
    targeting = _targeting(fields, offered, errors)
    percents = _groups(_one(fields, "groups") or "100", errors)
    success = _percent(_one(fields, "success_threshold"), "Success", errors, "thresholds")
    failure = _percent(_one(fields, "error_threshold"), "Failure", errors, "thresholds")
    window = _window(fields, errors)
    start_at = _start_at(_one(fields, "start_at"), errors)
    if errors or targeting is None:
        return None, errors
    spec = CampaignSpec(
        name=name,
        targeting=targeting,
        packages=packages,
        groups=tuple(GroupSpec(p, success, failure) for p in percents),
        consent_required=_one(fields, "consent") == "yes",
        start_at=start_at,
        window=window,
        release_notes_url=_one(fields, "release_notes_url"),
    )
    return spec, {}
