"""The console's errors, under the backend's :class:`CloudError` tree."""

from __future__ import annotations

from redstone_cloud.errors import CloudError, Forbidden


class SignInNeeded(CloudError):
    """No valid session: the browser is sent to the sign-in page."""

    status = 401


class Throttled(CloudError):
    """Too many failed sign-ins for this user name or address; ``retry_after`` seconds."""

    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CsrfRefused(Forbidden):
    """An unsafe request without the session's CSRF token."""


class RoleRefused(Forbidden):
    """The signed-in user's role does not allow this page or action."""
