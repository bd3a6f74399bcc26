"""The post-boot health check runs real commands, with a deadline."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from redstone_agent.sub.config import HealthConfig
from redstone_agent.sub.health import check_health


def run(config: HealthConfig) -> tuple[bool, str]:
    return asyncio.run(check_health(config))


def test_nothing_configured_is_healthy() -> None:
    assert run(HealthConfig()) == (True, "healthy")


def test_command_exit_status_decides() -> None:
    assert run(HealthConfig(command=["true"]))[0]
    healthy, why = run(HealthConfig(command=["sh", "-c", "echo app down; exit 3"]))
    assert not healthy
    assert "exited 3" in why
    assert "app down" in why


def test_a_hanging_command_times_out() -> None:
    healthy, why = run(HealthConfig(command=["sleep", "10"], timeout=0.2))
    assert not healthy
    assert "timed out" in why


def test_a_missing_command_is_unhealthy_not_a_crash() -> None:
    healthy, why = run(HealthConfig(command=["/nonexistent/check"]))
    assert not healthy
    assert "cannot run" in why


def test_inactive_units_fail() -> None:
    healthy, why = run(HealthConfig(units=["redstone-no-such-unit.service"], timeout=5))
    assert not healthy
    assert "units not active" in why


def _fake_systemctl(tmp_path: Path, start_exit: int) -> Path:
    """A ``systemctl`` that logs its arguments; ``start`` exits ``start_exit``."""
    log = tmp_path / "calls"
    script = tmp_path / "systemctl"
    script.write_text(
        f'#!/bin/sh\necho "$*" >>{log}\n'
        f'[ "$1" = start ] && {{ echo "A dependency job failed."; exit {start_exit}; }}\nexit 0\n'
    )
    script.chmod(0o755)
    return log


def test_boot_complete_target_is_started_and_waited_for_not_only_queried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = _fake_systemctl(tmp_path, start_exit=0)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")

    healthy, _ = run(HealthConfig(units=["boot-complete.target"], timeout=5))

    assert healthy
    calls = log.read_text().splitlines()
    assert calls == ["start boot-complete.target", "is-active --quiet boot-complete.target"]


def test_a_failed_boot_assessment_is_unhealthy_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = _fake_systemctl(tmp_path, start_exit=1)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")

    healthy, why = run(HealthConfig(units=["boot-complete.target"], timeout=5))

    assert not healthy
    assert "boot assessment failed" in why and "dependency job failed" in why
    assert log.read_text().splitlines() == ["start boot-complete.target"]
