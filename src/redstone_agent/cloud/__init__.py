"""The vehicle's device client of the cloud (docs/api.md §3): poll, nonce, manifest, events, logs.

``config`` says where the backend is, ``client.DeviceClient`` talks to it over
mutual TLS, ``protocol`` holds the wire rules as pure functions, ``schedule``
says when to poll next. Vehicle code never imports the backend (``redstone_cloud``).
"""

from redstone_agent.cloud.client import DeviceClient
from redstone_agent.cloud.config import CloudConfig
from redstone_agent.cloud.errors import (
    CloudAuthRejected,
    CloudConflict,
    CloudError,
    CloudProtocolError,
    CloudRejected,
    CloudRequestError,
    CloudTlsError,
    CloudUnavailable,
)
from redstone_agent.cloud.messages import ManifestAck, Offer, OfferedImage, PollResult
from redstone_agent.cloud.schedule import PollSchedule

__all__ = [
    "CloudAuthRejected",
    "CloudConfig",
    "CloudConflict",
    "CloudError",
    "CloudProtocolError",
    "CloudRejected",
    "CloudRequestError",
    "CloudTlsError",
    "CloudUnavailable",
    "DeviceClient",
    "ManifestAck",
    "Offer",
    "OfferedImage",
    "PollResult",
    "PollSchedule",
]
