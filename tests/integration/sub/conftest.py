"""Every node of these fleets runs the hardened someipyd, as vehicles must (docs/someip.md §10).

The lab starts someipy's own ``someipyd`` by default. A Sub answers refusals
as SOME/IP ERROR messages, which the stock daemon on the Master's side
drops, and the stock daemon's UDP parser is the bug the hardening fixes; so
these tests point the lab at ``python -m redstone_agent.someip.someipyd``.
"""

from __future__ import annotations

import importlib
import stat
import sys
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def hardened_someipyd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    launcher = tmp_path_factory.mktemp("bin") / "redstone-someipyd"
    launcher.write_text(
        f'#!/bin/sh\nexec "{sys.executable}" -m redstone_agent.someip.someipyd "$@"\n'
    )
    launcher.chmod(launcher.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    with pytest.MonkeyPatch.context() as patch:
        # The lab picks its daemon through a module-level ``_someipyd()``; it lives in
        # tests.integration.netns or, since the lab moved, redstone_agent.vvehicle.netlab.
        for name in ("tests.integration.netns", "redstone_agent.vvehicle.netlab"):
            try:
                module = importlib.import_module(name)
            except ImportError:
                continue
            if hasattr(module, "_someipyd"):
                patch.setattr(module, "_someipyd", lambda: str(launcher))
        yield str(launcher)
