"""Errors of the virtual vehicle, under :class:`redstone_agent.errors.RedstoneError`."""

from __future__ import annotations

from redstone_agent.errors import RedstoneError


class VehicleError(RedstoneError):
    """The virtual vehicle could not be built or its campaign did not behave."""


class LabError(VehicleError):
    """A node, namespace or process of the lab network failed."""


class CloudError(VehicleError):
    """The cloud backend refused a provisioning step (the message names the call)."""
