"""uds.running: the journaled image, what the manifest names, a failed flash in words."""

from __future__ import annotations

import pytest

from redstone_agent.uds.rollback import Outcome
from redstone_agent.uds.running import (
    NO_VERSION,
    UNREADABLE,
    Installed,
    describe_outcome,
    reported_image,
)

OLD = Installed("bcm-1.bin", "aa" * 32, 1000, 3, "1.0.0")
NEW = Installed("bcm-2.bin", "bb" * 32, 2000, 4, "2.0.0")
FACTORY = Installed("bcm-0.bin", release_counter=1)


def test_a_factory_image_matches_any_readable_version() -> None:
    assert FACTORY.matches("0.9") and not FACTORY.matches("") and not FACTORY.matches(None)
    assert OLD.matches("1.0.0") and not OLD.matches("2.0.0")


def test_the_image_being_flashed_is_named_once_the_ecu_reports_it() -> None:
    assert reported_image("2.0.0", OLD, pending=NEW) == (NEW, "runs 2.0.0")
    assert reported_image("1.0.0", OLD, pending=NEW) == (OLD, "runs 1.0.0")


def test_an_unconfirmed_version_is_named_without_a_hash() -> None:
    image, why = reported_image("7.7.7", OLD)
    assert image == Installed("7.7.7", release_counter=3)
    assert why == "the ECU reports version '7.7.7', not the journaled '1.0.0'; image hash unknown"
    assert reported_image(None, OLD) == (Installed("", release_counter=3), UNREADABLE)


@pytest.mark.parametrize(
    ("outcome", "version", "words"),
    [
        (Outcome.UNCHANGED, "1.0.0", "it still runs 1.0.0"),
        (Outcome.BANK_SWITCHED, "1.0.0", "it switched back to its other bank and runs 1.0.0"),
        (Outcome.RESTORED, "1.0.0", "the previous image was flashed back and runs 1.0.0"),
        (Outcome.CANCELLED, None, "cancelled; it waits in its bootloader"),
        (Outcome.FAILED, "0.1", "it runs 0.1"),
        (Outcome.FAILED, None, NO_VERSION),
    ],
)
def test_a_failed_flash_in_words(outcome: Outcome, version: str | None, words: str) -> None:
    assert describe_outcome(outcome, version) == words


def test_the_caller_words_an_ecu_that_reports_no_version() -> None:
    assert describe_outcome(Outcome.FAILED, "", silent="gone") == "gone"
