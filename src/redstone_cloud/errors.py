"""Errors of the cloud backend, all one-line and user-facing.

Each carries the HTTP status the API answers with, so services can raise them
without knowing about HTTP and the CLI can print them without a traceback.
"""

from __future__ import annotations

from redstone_agent.errors import RedstoneError


class CloudError(RedstoneError):
    """Base class of backend errors; ``status`` is the HTTP status to answer."""

    status = 400


class InvalidInput(CloudError):
    """The request is well-formed HTTP but its content is wrong."""

    status = 422


class NotFound(CloudError):
    """The named object does not exist."""

    status = 404


class Conflict(CloudError):
    """The request clashes with existing state (duplicate name, replayed nonce, ...)."""

    status = 409


class Unauthorized(CloudError):
    """No acceptable credentials were presented; ``challenge`` says which to send
    (the ``WWW-Authenticate`` header of the 401)."""

    status = 401
    challenge = "Bearer"


class Forbidden(CloudError):
    """Credentials were presented but are not allowed (revoked, other vehicle's data)."""

    status = 403


class TooLarge(CloudError):
    """An upload exceeds its configured size cap."""

    status = 413


class RangeNotSatisfiable(CloudError):
    """A ``Range`` header asks for bytes the object does not have."""

    status = 416

    def __init__(self, message: str, length: int) -> None:
        super().__init__(message)
        self.length = length


class BadSignature(CloudError):
    """A signed document (manifest, metadata) failed verification."""

    status = 422


class ConfigError(CloudError):
    """The backend's configuration is unusable."""
