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
