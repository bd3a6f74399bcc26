"""A Sub without UDS ECUs behind it never loads the UDS stack (udsoncan, python-can,
can-isotp: about 6 MiB of its idle memory; tools/bench/someip.py ``rss_idle_mib``)."""

from __future__ import annotations

import subprocess
import sys

UDS_STACK = ("udsoncan", "can", "isotp")


def loaded_after(statement: str) -> list[str]:
    probe = (
        f"import sys; {statement}; "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {UDS_STACK!r}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    return [line for line in out.strip().strip("[]").split(", ") if line]


def test_the_sub_daemon_imports_no_uds_transport() -> None:
    assert loaded_after("import redstone_agent.cli.sub, redstone_agent.sub.daemon") == []


def test_the_flasher_still_brings_its_transport() -> None:
    assert "'udsoncan'" in loaded_after("import redstone_agent.uds.flasher")
