"""The one exception hierarchy of the agent.

Every error a user can cause or meet derives from :class:`RedstoneError`; its
``str()`` is a single line that says what went wrong and, where it helps, what
to do. Command-line entry points print that line and exit non-zero instead of
showing a traceback.
"""


class RedstoneError(Exception):
    """Base class: an error with a one-line, user-facing message."""
