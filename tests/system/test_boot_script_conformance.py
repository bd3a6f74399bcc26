"""etc/u-boot/boot.cmd on real U-Boot chooses exactly as BootState.choose, for every state."""

from __future__ import annotations

from pathlib import Path

import pytest
from tools.qemu.conformance import BASE_ARGS, all_cases, build_disk, parse_outcomes
from tools.qemu.machine import missing_requirements, power_cycle

pytestmark = [pytest.mark.system, pytest.mark.slow]
CHUNK = 170
"""Cases per U-Boot run: each case nests one more `source`, keep the depth moderate."""


def test_uboot_script_matches_the_reference_selection_in_every_state(tmp_path: Path) -> None:
    reason = missing_requirements()
    if reason is not None:
        pytest.skip(f"QEMU system tests cannot run: {reason}")
    cases = all_cases()
    outcomes = {}
    for start in range(0, len(cases), CHUNK):
        chunk = cases[start : start + CHUNK]
        workdir = tmp_path / f"chunk-{start}"
        workdir.mkdir()
        console = workdir / "console.log"
        cycle = power_cycle(build_disk(workdir, chunk), console, timeout_s=120)
        text = console.read_text(errors="replace")
        assert not cycle.timed_out, text[-2000:]
        assert "conformance: end" in text, text[-2000:]
        outcomes.update(parse_outcomes(text))

    assert len(outcomes) == len(cases) > 300
    for case in cases:
        slot, printed, saved = case.expected()
        got = outcomes[case.number]
        assert (got.slot, got.printed, got.saved) == (slot, printed, saved), case.env
        assert got.bootargs == f"{BASE_ARGS} redstone.slot={slot}"
