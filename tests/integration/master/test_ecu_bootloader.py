"""The bootloader port (``kind = "bootloader"``) over the real boot-script store."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from redstone_agent.master.ecu_bootloader import BootloaderPort, standing_of
from redstone_agent.master.errors import EcuFailed
from redstone_agent.master.ports import DeltaImage, EcuJob, EcuStanding, Image
from redstone_agent.master.topology import EcuKind, EcuSpec
from redstone_agent.slots.bootscript import (
    BootScriptState,
    BootScriptStatus,
    CopyView,
    Pending,
)
from redstone_agent.uptane.keys import generate_signer
from redstone_agent.uptane.manifests import verify_ecu_manifest
from tests.integration.slots.bootscript_bench import Bench, Script, make_bench

SERIAL = "TBOX-BOOT"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def image_of(script: Script, target: str) -> Image:
    return Image(target, script.sha256, script.length, target, script.path, "", 3)


@pytest.fixture
def bench(tmp_path: Path) -> Bench:
    return make_bench(tmp_path)


def port_for(bench: Bench) -> tuple[BootloaderPort, Any]:
    signer = generate_signer()
    spec = EcuSpec(SERIAL, EcuKind.SELF, "tbox-uboot", installed_target="boot-scr-1")
    return BootloaderPort(spec, bench.store(), signer), signer


def job_for(bench: Bench) -> EcuJob:
    return EcuJob(SERIAL, image_of(bench.new, "boot-scr-2"), image_of(bench.old, "boot-scr-1"))


def test_a_campaign_install_activate_commit(bench: Bench) -> None:
    port, _ = port_for(bench)
    job = job_for(bench)
    seen: list[tuple[int, int]] = []
    assert run(port.standing(job)) is EcuStanding.OLD
    result = run(port.install(job, lambda done, total: seen.append((done, total))))
    assert result.bytes_sent == job.new.length and seen[-1] == (job.new.length,) * 2
    assert run(port.standing(job)) is EcuStanding.INSTALLED
    assert run(port.install(job, lambda *_: None)).bytes_sent == 0  # idempotent
    run(port.activate(job))
    assert run(port.standing(job)) is EcuStanding.TRIAL
    run(port.activate(job))
    run(port.commit(job))
    assert run(port.standing(job)) is EcuStanding.NEW
    assert "committed" in run(port.commit(job)).detail
    with pytest.raises(EcuFailed, match=r"TBOX-BOOT: cannot roll back: boot-scr-2 is committed"):
        run(port.rollback(job))


def test_rollback_from_trial_is_all_old(bench: Bench) -> None:
    port, _ = port_for(bench)
    job = job_for(bench)
    run(port.install(job, lambda *_: None))
    run(port.activate(job))
    run(port.rollback(job))
    assert run(port.standing(job)) is EcuStanding.OLD
    assert bench.boots() == "A" and bench.selector() == "A"
    run(port.rollback(job))  # idempotent


def test_manifest_names_the_running_image_signed(bench: Bench) -> None:
    port, signer = port_for(bench)
    job = job_for(bench)
    before = verify_ecu_manifest(run(port.manifest("n1")), signer.public_key, expected_nonce="n1")
    assert (before.filename, before.sha256) == ("boot-scr-1", bench.old.sha256)
    run(port.install(job, lambda *_: None))
    run(port.activate(job))
    after = verify_ecu_manifest(run(port.manifest("n2")), signer.public_key)
    assert (after.filename, after.sha256, after.length) == (
        "boot-scr-2",
        bench.new.sha256,
        bench.new.length,
    )
    assert after.release_counter == 3 and after.report["copy"] == "B"


def test_store_refusals_are_one_line_ecu_failures(tmp_path: Path) -> None:
    bench = make_bench(tmp_path, redundant_env=False)
    port, _ = port_for(bench)
    with pytest.raises(EcuFailed, match=r"^TBOX-BOOT: boot script install: .*redundant") as err:
        run(port.install(job_for(bench), lambda *_: None))
    assert "\n" not in str(err.value)


def test_a_delta_is_refused_before_any_copy_is_written(bench: Bench) -> None:
    port, _ = port_for(bench)
    plain = job_for(bench)
    delta = DeltaImage("boot-scr-2.from-1.rsdelta", "ab" * 32, 272, "cd" * 32, bench.new.path, "")
    job = EcuJob(plain.serial, plain.new, plain.previous, delta=delta)
    before = bench.store().status()

    with pytest.raises(EcuFailed, match=r"^TBOX-BOOT: assigned a delta .*whole images only$"):
        run(port.install(job, lambda *_: None))

    assert bench.store().status() == before


def _status(state: BootScriptState, selected: str, valid: dict[str, str], pending: str) -> Any:
    views = {c: CopyView(c, c, sha, 1, problem="" if sha else "bad") for c, sha in valid.items()}
    booting = next((c for c in (selected, "B" if selected == "A" else "A") if valid[c]), "")
    intent = Pending("writing", "B", "A", pending, 1) if pending else None
    return BootScriptStatus(state, selected, booting, views, intent)


S = BootScriptState
E = EcuStanding


@pytest.mark.parametrize(
    ("status", "standing"),
    [
        (_status(S.IDLE, "A", {"A": "old", "B": "old"}, ""), E.OLD),
        (_status(S.IDLE, "B", {"A": "old", "B": "new"}, ""), E.NEW),
        (_status(S.IDLE, "B", {"A": "new", "B": ""}, ""), E.NEW),  # fallback runs it
        (_status(S.INTERRUPTED, "A", {"A": "old", "B": ""}, "new"), E.OLD),
        (_status(S.INSTALLED, "A", {"A": "old", "B": "new"}, "new"), E.INSTALLED),
        (_status(S.ACTIVATED, "B", {"A": "old", "B": "new"}, "new"), E.TRIAL),
        (_status(S.ACTIVATED, "B", {"A": "old", "B": ""}, "new"), E.FAILED),
        (_status(S.ACTIVATED, "B", {"A": "old", "B": "x"}, "x"), E.FAILED),
        (_status(S.IDLE, "A", {"A": "", "B": ""}, ""), E.FAILED),
    ],
)
def test_standing_table(status: BootScriptStatus, standing: EcuStanding) -> None:
    assert standing_of(status, "new") is standing
