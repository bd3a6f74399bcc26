"""The rules of UDS ECUs behind a Sub (sub/proxy.py): tables, checks, outcomes — no I/O."""

from __future__ import annotations

import hashlib

import pytest

from redstone_agent.someip.interface import ProxiedState, ResultCode
from redstone_agent.someip.messages import MetadataLocation, ProxiedImage, ProxyInstallRequest
from redstone_agent.sub.errors import VerificationFailed, WrongState
from redstone_agent.sub.proxy import (
    ALLOWED,
    BUSY,
    ON_RESTART,
    Command,
    Installed,
    Job,
    Record,
    Resume,
    RollbackAction,
    Signed,
    after_flash,
    check_install,
    manifest_image,
    require,
    rollback_action,
    rollback_goal,
)
from redstone_agent.sub.trust import Assignment
from redstone_agent.uds.rollback import Outcome

P = ProxiedState
NEW_SHA = hashlib.sha256(b"new").digest()
OLD_SHA = hashlib.sha256(b"old").digest()
HW = "bcm-hw"
NEW = ProxiedImage("bcm-2.bin", "http://m/new", NEW_SHA, 2000, "2.0.0", 2)
OLD = ProxiedImage("bcm-1.bin", "http://m/old", OLD_SHA, 1000, "1.0.0", 1)
BUNDLE = MetadataLocation("http://m/bundle", NEW_SHA, 10)
ASSIGNED = Assignment("bcm-2.bin", 2000, NEW_SHA.hex(), 2)
FACTORY = Installed("bcm-1.bin", release_counter=1)
"""What a Sub knows of an ECU it never flashed: the configured target name."""
FLASHED_OLD = Installed("bcm-1.bin", OLD_SHA.hex(), 1000, 1, "1.0.0")
"""What a Sub journals after flashing the old image itself."""
SIGNED_OLD = Signed("bcm-1.bin", 1000, OLD_SHA.hex(), (HW,), "1.0.0")
SIGNED_NEW = Signed("bcm-2.bin", 2000, NEW_SHA.hex(), (HW,), "2.0.0")


def job(previous: ProxiedImage | None = OLD, image: ProxiedImage = NEW) -> Job:
    return Job.of(ProxyInstallRequest("BCM-1", BUNDLE, image, previous))


def test_commands_are_allowed_only_when_nothing_runs_on_the_ecu() -> None:
    for command in Command:
        assert ALLOWED[command] == frozenset(ProxiedState) - BUSY
        for state in BUSY:
            with pytest.raises(WrongState, match=f"{command.value} for BCM-1 not allowed"):
                require(command, "BCM-1", state)
        require(command, "BCM-1", P.FAILED)


def test_every_state_has_a_restart_rule() -> None:
    assert set(ON_RESTART) == set(ProxiedState)
    assert {s for s, r in ON_RESTART.items() if r is not Resume.NOTHING} == set(BUSY)
    assert ON_RESTART[P.FLASHING] is Resume.INSTALL
    assert ON_RESTART[P.ROLLING_BACK] is Resume.ROLLBACK


def test_record_round_trips_through_the_journal() -> None:
    record = Record(
        FLASHED_OLD,
        P.FLASHING,
        seq=4,
        version="1.0.0",
        target="bcm-2.bin",
        job=job(),
        before=FACTORY,
        flashed=True,
        error=ResultCode.INSTALL_FAILED,
        detail="x",
        bytes_done=5,
        bytes_total=9,
    )
    assert Record.from_dict(record.to_dict()) == record
    status = record.status("BCM-1")
    assert (status.serial, status.running, status.target, status.seq) == (
        "BCM-1",
        "bcm-1.bin",
        "bcm-2.bin",
        4,
    )


def _check(j: Job, running: Installed = FACTORY, **kwargs: Signed | None) -> None:
    signed = {"signed_new": SIGNED_NEW, "signed_previous": SIGNED_OLD} | kwargs
    check_install("BCM-1", HW, j, ASSIGNED, running, **signed)


def test_the_assigned_image_with_a_verifiable_previous_passes() -> None:
    _check(job())  # factory ECU: the previous image is checked against the image repository
    _check(job(), FLASHED_OLD, signed_previous=None)  # flashed by this Sub: its own journal
    _check(job(previous=None))


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        (ProxiedImage("other.bin", "http://m/n", NEW_SHA, 2000, "2.0.0", 2), "not the assigned"),
        (ProxiedImage("bcm-2.bin", "http://m/n", NEW_SHA, 2001, "2.0.0", 2), "length 2001"),
        (ProxiedImage("bcm-2.bin", "http://m/n", OLD_SHA, 2000, "2.0.0", 2), "sha256 differs"),
        (ProxiedImage("bcm-2.bin", "http://m/n", NEW_SHA, 2000, "2.0.0", 1), "release counter"),
        (ProxiedImage("bcm-2.bin", "http://m/n", NEW_SHA, 2000, "9.9.9", 2), "not the signed"),
    ],
)
def test_an_image_other_than_the_assignment_is_refused(image: ProxiedImage, reason: str) -> None:
    with pytest.raises(VerificationFailed, match=f"install into BCM-1 refused: .*{reason}"):
        _check(job(image=image))


def test_a_delta_assignment_is_refused_for_a_uds_ecu() -> None:
    delta = Assignment("bcm-2.bin", 2000, NEW_SHA.hex(), 2, OLD_SHA.hex())
    with pytest.raises(VerificationFailed, match="whole images"):
        check_install(
            "BCM-1", HW, job(), delta, FACTORY, signed_new=None, signed_previous=SIGNED_OLD
        )


def test_without_an_image_repository_the_version_claim_is_not_checked() -> None:
    claimed = ProxiedImage("bcm-2.bin", "http://m/n", NEW_SHA, 2000, "anything", 2)
    _check(job(image=claimed, previous=None), signed_new=None)


def test_the_target_name_is_the_version_when_the_image_repository_has_none() -> None:
    unversioned = Signed("bcm-2.bin", 2000, NEW_SHA.hex(), (HW,), "")
    named = ProxiedImage("bcm-2.bin", "http://m/n", NEW_SHA, 2000, "bcm-2.bin", 2)
    _check(job(image=named, previous=None), signed_new=unversioned)


@pytest.mark.parametrize(
    ("previous", "running", "signed", "reason"),
    [
        (  # a downgrade the ECU never ran
            ProxiedImage("bcm-0.bin", "http://m/o", OLD_SHA, 1000, "0.1", 0),
            FACTORY,
            SIGNED_OLD,
            "not the one the ECU runs",
        ),
        (  # other bytes than the Sub flashed
            ProxiedImage("bcm-1.bin", "http://m/o", NEW_SHA, 1000, "1.0.0", 1),
            FLASHED_OLD,
            None,
            "differs from the one the Sub installed",
        ),
        (  # factory image and no image repository (partial verification)
            OLD,
            FACTORY,
            None,
            "cannot be verified",
        ),
        (  # factory image, other bytes than signed
            ProxiedImage("bcm-1.bin", "http://m/o", NEW_SHA, 1000, "1.0.0", 1),
            FACTORY,
            SIGNED_OLD,
            "differs from the image repository",
        ),
        (  # factory image signed for other hardware
            OLD,
            FACTORY,
            Signed("bcm-1.bin", 1000, OLD_SHA.hex(), ("other-hw",), "1.0.0"),
            "not built for",
        ),
    ],
)
def test_a_previous_image_that_cannot_be_trusted_is_refused(
    previous: ProxiedImage, running: Installed, signed: Signed | None, reason: str
) -> None:
    with pytest.raises(VerificationFailed, match=reason):
        _check(job(previous=previous), running, signed_previous=signed)


@pytest.mark.parametrize(
    ("outcome", "after", "state", "runs"),
    [
        (Outcome.INSTALLED, "2.0.0", P.INSTALLED, "bcm-2.bin"),
        (Outcome.UNCHANGED, "1.0.0", P.FAILED, "bcm-1.bin"),
        (Outcome.BANK_SWITCHED, "1.0.0", P.FAILED, "bcm-1.bin"),
        (Outcome.RESTORED, "1.0.0", P.FAILED, "bcm-1.bin"),
        (Outcome.FAILED, None, P.FAILED, "bcm-1.bin"),
    ],
)
def test_after_flash(outcome: Outcome, after: str | None, state: ProxiedState, runs: str) -> None:
    settled = after_flash(job(), FACTORY, outcome, after, None if after == "2.0.0" else "boom")
    assert (settled.state, settled.running.target) == (state, runs)
    if state is P.FAILED:
        assert settled.error is ResultCode.INSTALL_FAILED
        assert settled.detail.startswith("flashing 2.0.0 failed: boom; ")
        assert "\n" not in settled.detail
    if outcome is Outcome.FAILED:
        assert "bootloader" in settled.detail


def test_the_rollback_goal() -> None:
    assert rollback_goal(Record(FACTORY)) == FACTORY
    with_previous = Record(Installed.of(job().image), job=job(), before=FACTORY)
    assert rollback_goal(with_previous).version == "1.0.0"
    without = Record(Installed.of(job().image), job=job(previous=None), before=FACTORY)
    assert rollback_goal(without) == FACTORY


@pytest.mark.parametrize(
    ("version", "flashed", "previous", "dual", "action"),
    [
        ("1.0.0", True, True, False, RollbackAction.NONE),  # already runs the goal
        ("2.0.0", True, True, False, RollbackAction.FLASH_PREVIOUS),
        (None, True, True, False, RollbackAction.FLASH_PREVIOUS),  # left in its bootloader
        ("2.0.0", True, False, True, RollbackAction.SWITCH_BANK),
        ("2.0.0", True, False, False, RollbackAction.IMPOSSIBLE),
        ("2.0.0", False, True, True, RollbackAction.NONE),  # the install never reached it
    ],
)
def test_rollback_action(
    version: str | None, flashed: bool, previous: bool, dual: bool, action: RollbackAction
) -> None:
    record = Record(Installed.of(job().image), job=job(), before=FACTORY, flashed=flashed)
    assert rollback_action(version, record, has_previous_image=previous, dual_bank=dual) is action


def test_an_unknown_factory_version_is_not_mistaken_for_the_goal_when_the_new_one_runs() -> None:
    record = Record(Installed.of(job().image), job=job(previous=None), before=FACTORY, flashed=True)
    assert rollback_goal(record).version == ""  # any version would "match" it
    assert (
        rollback_action("2.0.0", record, has_previous_image=False, dual_bank=True)
        is RollbackAction.SWITCH_BANK
    )


def test_the_manifest_names_the_journaled_image_only_when_the_version_confirms_it() -> None:
    record = Record(FLASHED_OLD)
    assert manifest_image(record, "1.0.0") == (FLASHED_OLD, "runs 1.0.0")
    image, why = manifest_image(record, "7.7.7")
    assert (image.target, image.sha256, image.release_counter) == ("7.7.7", "", 1)
    assert "image hash unknown" in why
    image, why = manifest_image(record, None)
    assert image.target == "" and "bootloader" in why
    assert manifest_image(Record(FACTORY), "1.0.0")[0] == FACTORY  # factory: any version
