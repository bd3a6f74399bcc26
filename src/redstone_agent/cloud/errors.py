"""Errors of the device client, one tree under :class:`RedstoneError`.

The classes follow what the caller should *do*, not where the failure came
from: :class:`CloudUnavailable` is worth trying again later (network, 5xx,
429), :class:`CloudRejected` is not (the server read the request and said no),
:class:`CloudTlsError` needs a person (wrong CA, unreadable certificate), and
:class:`CloudProtocolError` means the server answered something the client
cannot trust (malformed, oversize). Every message is one line that names the
route, e.g. ``POST /api/v1/device/manifest refused (HTTP 409): ...``.
"""

from __future__ import annotations

from redstone_agent.errors import RedstoneError


class CloudError(RedstoneError):
    """Base class of every device-client failure."""

    def __init__(self, route: str, problem: str, *, line: str | None = None) -> None:
        super().__init__(line or (f"{route}: {problem}" if route else problem))
        self.route = route
        """``METHOD /path`` of the call that failed ("" when none was made)."""
        self.problem = problem
        """The message without the route."""


class CloudUnavailable(CloudError):
    """No usable answer: connection refused or lost, timeout, HTTP 5xx or 429. Transient."""

    def __init__(self, route: str, message: str, status: int | None = None) -> None:
        super().__init__(route, message)
        self.status = status
        """The HTTP status when the server answered, ``None`` when it could not be reached."""


class CloudRejected(CloudError):
    """The server refused the request (HTTP 4xx); sending it again unchanged will not help."""

    def __init__(self, route: str, status: int, reason: str) -> None:
        super().__init__(route, reason, line=f"{route} refused (HTTP {status}): {reason}")
        self.status = status
        self.reason = reason
        """The server's ``{"error": ...}`` text (or a summary of its body)."""


class CloudAuthRejected(CloudRejected):
    """401/403: the vehicle's certificate is unknown, revoked or expired, or the data is not
    its own. Retrying cannot help until the vehicle gets a new identity."""


class CloudConflict(CloudRejected):
    """409: e.g. a manifest nonce never issued or already used. Get a fresh nonce and resend."""


class CloudTlsError(CloudError):
    """The TLS handshake failed: the server's certificate does not chain to the configured CA,
    or the client certificate or key cannot be used. A configuration problem, not transient."""


class CloudProtocolError(CloudError):
    """The server answered, but not as docs/api.md says (malformed JSON, missing fields,
    oversize body, unexpected status). Treated like an outage by the poll loop."""


class CloudRequestError(CloudError):
    """The client refused to send a request it was asked to (e.g. an event whose detail is not
    JSON). A bug in the caller, but one a best-effort reporter can catch with the others."""
