"""Errors of the vehicle-state preconditions and the CAN simulator.

Rule, DBC and scenario errors are configuration errors (:class:`ConfigError`):
the Master refuses to start on them and the CLI prints one line naming the
file or the rule. A bus that cannot be opened is a :class:`BusError`.
"""

from __future__ import annotations

from redstone_agent.config import ConfigError
from redstone_agent.errors import RedstoneError


class VehicleError(RedstoneError):
    """Base of every error of :mod:`redstone_agent.vehicle`."""


class RuleError(ConfigError, VehicleError):
    """A precondition rule does not parse, or does not fit the DBC."""

    def __init__(self, rule: str, problem: str, where: str = "rule") -> None:
        super().__init__(where, repr(rule), problem)
        self.rule = rule


class DbcError(ConfigError, VehicleError):
    """The DBC file is missing or unparsable, or lacks a signal the configuration names."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(path, "", problem)


class ScenarioError(ConfigError, VehicleError):
    """A simulator scenario is unreadable or names a signal or value the DBC does not allow."""


class BusError(VehicleError):
    """The CAN bus cannot be opened."""
