"""The UDS port's pure rules: standing from the version DID, the journal record, outcomes."""

from __future__ import annotations

from pathlib import Path

import pytest

from redstone_agent.master.ecu_uds import Installed, Record, describe_outcome, standing_of
from redstone_agent.master.ports import EcuJob, EcuStanding, Image
from redstone_agent.uds.flasher import FlashReport
from redstone_agent.uds.rollback import Outcome

E = EcuStanding


def _image(version: str) -> Image:
    return Image(f"bcm-{version}.bin", "ab" * 32, 100, version, Path("/cache/x"), "")


FACTORY = Record(Installed("bcm-1.0.0.bin"))
AFTER_INSTALL = Record(Installed.of(_image("2.0.0")), before=Installed.of(_image("1.0.0")))


@pytest.mark.parametrize(
    ("version", "previous", "record", "expected"),
    [
        (None, "1.0.0", FACTORY, E.FAILED),  # does not answer
        ("", "1.0.0", FACTORY, E.FAILED),  # bootloader: the version DID is empty
        ("2.0.0", "1.0.0", FACTORY, E.NEW),
        ("1.0.0", "1.0.0", FACTORY, E.OLD),
        ("1.5.0", "1.0.0", FACTORY, E.FAILED),  # neither: flash the previous back
        ("1.5.0", None, FACTORY, E.OLD),  # factory version unknown: whatever runs is old
        ("1.0.0", None, AFTER_INSTALL, E.OLD),  # the image before the journaled new one
        ("1.5.0", None, AFTER_INSTALL, E.FAILED),
    ],
)
def test_standing(version: str | None, previous: str | None, record: Record, expected: E) -> None:
    job = EcuJob("BCM-01", new=_image("2.0.0"), previous=_image(previous) if previous else None)
    assert standing_of(version, job, record) is expected


def test_record_round_trips_through_the_journal_format() -> None:
    record = Record(AFTER_INSTALL.image, AFTER_INSTALL.before, pending=Installed.of(_image("3")))
    assert Record.from_dict(record.to_dict()) == record
    assert Record.from_dict(FACTORY.to_dict()) == FACTORY


@pytest.mark.parametrize(
    ("outcome", "after", "words"),
    [
        (Outcome.UNCHANGED, "1.0.0", "it still runs 1.0.0"),
        (Outcome.BANK_SWITCHED, "1.0.0", "it switched back to its other bank and runs 1.0.0"),
        (Outcome.RESTORED, "1.0.0", "the previous image was flashed back and runs 1.0.0"),
        (Outcome.FAILED, None, "it reports no version (left in its bootloader, or unreachable)"),
        (Outcome.CANCELLED, None, "cancelled; it waits in its bootloader"),
    ],
)
def test_outcome_in_words(outcome: Outcome, after: str | None, words: str) -> None:
    report = FlashReport("bcm", outcome, "1.0.0", after, error="ECU bcm: check failed")
    assert describe_outcome(report) == words
