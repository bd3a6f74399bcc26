"""Fixtures of the QEMU system tests: the cached disk template and a fresh board per test."""

from __future__ import annotations

from pathlib import Path

import pytest
from tools.qemu.board import Board, disk_template
from tools.qemu.machine import missing_requirements


@pytest.fixture(scope="session")
def qemu_disk_template() -> Path:
    """Kernel, initramfs and disk, built once per machine (cached) and once per session."""
    reason = missing_requirements()
    if reason is not None:
        pytest.skip(f"QEMU system tests cannot run: {reason}")
    return disk_template()


@pytest.fixture
def board(tmp_path: Path, qemu_disk_template: Path) -> Board:
    """A provisioned board: slot A holds version 1, committed and primary; slot B empty."""
    made = Board.create(tmp_path, qemu_disk_template)
    made.provision("A")
    return made
