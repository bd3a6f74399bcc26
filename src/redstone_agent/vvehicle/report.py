"""The campaign summary table — pure formatting of the Master's report and our own check.

The Master reports per ECU what it did; the virtual vehicle then reads each
ECU's *real* version itself (a Sub's booted slot, a UDS ECU's version DID)
and puts it beside the report, so a table that says "rolled back" is proof,
not a claim.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

COLUMNS = ("ECU", "transport", "old → new", "outcome", "seconds", "downloaded", "saved", "now runs")


@dataclass(frozen=True)
class CampaignResult:
    """One campaign as the CLI prints it (and ``--json`` emits it)."""

    campaign: str
    outcome: str
    detail: str
    rows: list[dict[str, Any]]
    """Per ECU: the Master's report fields plus ``actual`` (what the ECU runs now)."""
    expected: str
    """The version every ECU must run now."""
    diagnostics: str = ""
    """One line: the DTCs that appeared during the update (docs/master.md §9)."""

    @property
    def consistent(self) -> bool:
        """Every ECU runs ``expected`` (all-new or all-old, as the campaign promised)."""
        return all(row.get("actual") == self.expected for row in self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "outcome": self.outcome,
            "detail": self.detail,
            "expected": self.expected,
            "consistent": self.consistent,
            "diagnostics": self.diagnostics,
            "ecus": self.rows,
        }


def merge(
    report: Mapping[str, Any], actual: Mapping[str, str], names: Mapping[str, str], expected: str
) -> CampaignResult:
    """The Master's ``last_report`` plus the versions we read (*actual*: serial → version).

    *names* maps serial → a short ECU name for the table; ECUs the report
    leaves out still get a row (with what they run), so nothing hides.
    """
    reported = {str(e.get("serial")): dict(e) for e in report.get("ecus", [])}
    rows = []
    for serial, name in names.items():
        row = reported.pop(serial, {"serial": serial})
        row["name"] = name
        row["actual"] = actual.get(serial, "?")
        rows.append(row)
    rows += reported.values()
    diagnostics = report.get("diagnostics")
    return CampaignResult(
        campaign=str(report.get("campaign", "")),
        outcome=str(report.get("outcome", "")),
        detail=str(report.get("detail", "")),
        rows=rows,
        expected=expected,
        diagnostics=str(diagnostics.get("summary", "")) if isinstance(diagnostics, dict) else "",
    )


def _size(value: object) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "-"
    if value >= 1 << 20:
        return f"{value / (1 << 20):.1f} MiB"
    if value >= 1 << 10:
        return f"{value / (1 << 10):.0f} KiB"
    return f"{int(value)} B"


def _seconds(value: object) -> str:
    return f"{value:.1f}" if isinstance(value, int | float) else "-"


def table(result: CampaignResult) -> str:
    """Aligned text table with a title line and a verdict line."""
    lines: list[Sequence[str]] = [COLUMNS]
    for row in result.rows:
        lines.append(
            (
                str(row.get("name", row.get("serial", "?"))),
                str(row.get("transport", "-")),
                f"{row.get('old', '?')} → {row.get('new', '?')}",
                str(row.get("outcome", "-")),
                _seconds(row.get("seconds")),
                _size(row.get("bytes_downloaded")),
                _size(row.get("bytes_saved")),
                str(row.get("actual", "?")),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
    text = [
        f"{result.campaign}: {result.outcome}" + (f" ({result.detail})" if result.detail else "")
    ]
    for index, line in enumerate(lines):
        text.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip())
        if index == 0:
            text.append("  ".join("-" * w for w in widths))
    verdict = "every ECU runs" if result.consistent else "NOT every ECU runs"
    text.append(f"{verdict} {result.expected}")
    if result.diagnostics:
        text.append(f"UDS diagnostics: {result.diagnostics}")
    return "\n".join(text)
