"""The I/O half of the client: an mTLS session, bounded body reads, one-line network errors.

Kept apart from ``client.py`` so the rules that touch sockets are few and
visible: the vehicle takes no proxy or CA settings from the environment
(``trust_env = False``; ``$REQUESTS_CA_BUNDLE`` would silently replace the
configured CA), reads at most a fixed number of bytes of any answer, within a
deadline (slow-retrieval and endless-data attacks), and never decompresses.
"""

from __future__ import annotations

import ssl
import time
from pathlib import Path

import requests
import urllib3

from redstone_agent import __version__
from redstone_agent.cloud.config import CloudConfig
from redstone_agent.cloud.errors import (
    CloudError,
    CloudProtocolError,
    CloudRequestError,
    CloudTlsError,
    CloudUnavailable,
)
from redstone_agent.cloud.protocol import one_line, oversize

USER_AGENT = f"redstone-agent/{__version__}"
CHUNK = 64 * 1024


def _check_file(what: str, path: Path) -> None:
    if not path.is_file():
        raise CloudTlsError("", f"{what} {path}: no such file")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise CloudTlsError("", f"{what} {path}: cannot read it ({exc.strerror})") from exc


def make_session(config: CloudConfig) -> requests.Session:
    """A session that presents the vehicle's certificate and trusts only the configured CA.

    The files are checked now: ``requests`` would only notice at the first
    request, and with an ``OSError`` outside its own exception tree.
    """
    if config.ca is not None:
        _check_file("CA bundle", config.ca)
    if config.cert is not None and config.key is not None:
        _check_file("client certificate", config.cert)
        _check_file("client key", config.key)
    session = requests.Session()
    session.trust_env = False
    session.verify = str(config.ca) if config.ca is not None else True
    if config.cert is not None and config.key is not None:
        session.cert = (str(config.cert), str(config.key))
    session.headers["User-Agent"] = USER_AGENT
    return session


def _innermost(error: BaseException) -> BaseException:
    """Unwrap requests' and urllib3's wrappers down to the exception that says what happened."""
    seen = set()
    while id(error) not in seen:
        seen.add(id(error))
        reason = getattr(error, "reason", None)
        if isinstance(reason, BaseException):
            error = reason
        elif error.args and isinstance(error.args[0], BaseException):
            error = error.args[0]
        elif error.__cause__ is not None:
            error = error.__cause__
        else:
            break
    return error


def describe(error: BaseException) -> str:
    """A network exception as a short line: 'connection refused', 'certificate verify failed:
    unable to get local issuer certificate', not urllib3's pool and retry narrative."""
    inner = _innermost(error)
    if isinstance(inner, ssl.SSLCertVerificationError) and inner.verify_message:
        return one_line(f"certificate verify failed: {inner.verify_message}")
    if isinstance(inner, ssl.SSLError) and inner.reason:
        return one_line(f"{inner.reason.replace('_', ' ').lower()} ({inner.library or 'ssl'})")
    if isinstance(inner, OSError) and inner.strerror:
        return one_line(inner.strerror)
    text = str(inner)
    # urllib3 prefixes "<HTTPSConnection(host=..., port=...)>: " or "HTTPSConnectionPool(...): ".
    if ">: " in text:
        text = text.split(">: ", 1)[1]
    return one_line(text or type(inner).__name__)


def classify(where: str, base_url: str, error: BaseException) -> CloudError:
    """The client's error for an exception ``requests`` raised while sending or waiting."""
    if isinstance(error, requests.exceptions.SSLError):
        return CloudTlsError(where, f"TLS with {base_url} failed: {describe(error)}")
    if isinstance(error, requests.Timeout):
        return CloudUnavailable(where, f"no answer from {base_url}: timed out")
    if isinstance(error, requests.ConnectionError | urllib3.exceptions.HTTPError):
        return CloudUnavailable(where, f"cannot reach {base_url}: {describe(error)}")
    if isinstance(error, OSError) and not isinstance(error, requests.RequestException):
        # Certificate files that vanished or became unreadable since make_session.
        return CloudTlsError(where, f"cannot use the TLS files: {describe(error)}")
    return CloudRequestError(where, describe(error))


def read_capped(
    where: str, raw: urllib3.BaseHTTPResponse, limit: int, deadline_s: float, *, truncate: bool
) -> bytes:
    """At most ``limit`` bytes of the body, within ``deadline_s`` seconds.

    Past the limit, raise (an answer we rely on) or, with ``truncate``, stop
    reading (an error answer, quoted only for its first line). A declared
    ``Content-Length`` over the limit is refused before reading anything.
    """
    declared = raw.headers.get("Content-Length")
    if not truncate and declared is not None and declared.isdigit() and int(declared) > limit:
        raise oversize(where, limit)
    encoding = (raw.headers.get("Content-Encoding") or "identity").strip().lower()
    if not truncate and encoding != "identity":
        problem = f"answer is {one_line(encoding, 40)}-encoded; identity was asked for"
        raise CloudProtocolError(where, problem)
    deadline = time.monotonic() + deadline_s
    chunks: list[bytes] = []
    size = 0
    try:
        while size <= limit:
            chunk = raw.read1(min(CHUNK, limit + 1 - size), decode_content=False)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if time.monotonic() > deadline:
                raise CloudUnavailable(where, f"answer not complete within {deadline_s:g} s")
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise CloudUnavailable(where, f"connection lost while reading: {describe(exc)}") from exc
    body = b"".join(chunks)
    if size > limit:
        if truncate:
            return body[:limit]
        raise oversize(where, limit)
    return body
