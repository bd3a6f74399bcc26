"""The post-boot health check runs real commands, with a deadline."""

from __future__ import annotations

import asyncio

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
