"""Helpers shared by test suites (importable as ``tests.support``)."""

from __future__ import annotations

import shutil

import pytest


def require_tool(name: str) -> str:
    """Return the path of an executable, or skip the test saying which package is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (see tools/debian-packages.txt)")
    return path
