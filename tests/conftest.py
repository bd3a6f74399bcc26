"""Shared test plumbing: markers that skip honestly when the machine lacks something."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``root``-marked tests when not root, with the reason stated."""
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (loop devices / network namespaces)")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Under CI (root, every package installed by bootstrap) a skip hides a missing
    install step, so it fails instead, naming the reason. Tests marked ``opt_in`` run
    only when asked (too slow for CI) and may skip."""
    outcome = yield
    report = outcome.get_result()
    opted_out = item.get_closest_marker("opt_in") is not None
    if (
        os.environ.get("CI") == "true"
        and report.skipped
        and not hasattr(report, "wasxfail")
        and not opted_out
    ):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, where nothing may be missing: {reason}"


from tests.softhsm import softhsm  # noqa: E402, F401  (the session's SoftHSM2 tokens)
from tests.swtpm import swtpm  # noqa: E402, F401  (the session's software TPM tokens)
