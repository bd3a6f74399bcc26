"""The Master's device client: HTTPS with mutual TLS to the backend's device API.

It only moves bytes; every rule about what a request carries and what an
answer may contain lives in ``protocol.py``. One ``requests.Session`` holds
the vehicle's TLS identity and is shared with ``uptane.primary.PrimaryVerifier``
(``client.session``), so metadata and targets travel under the same
certificate as polls and manifests.

Retries (``RetryPolicy``: attempts and jittered delays; the per-read timeout is
``CloudConfig.timeout``) apply only to failures that may pass — no connection,
timeout, HTTP 5xx or 429 — and only to calls that are safe to repeat:

* ``poll`` (a GET) and ``nonce`` (an unused nonce is harmless; the backend
  keeps the 16 newest) are retried;
* ``event`` and ``upload_log`` are retried: if an answer was lost after the
  backend stored the first copy, it stores a duplicate, which is harmless
  (assignment moves are idempotent, the audit trail shows both);
* ``post_manifest`` is never retried: its nonce is single-use, so a second
  copy would be refused as a replay. The caller gets a fresh nonce and sends
  a newly signed manifest instead.

Not thread-safe: one caller at a time (the Master runs it on one worker thread).
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from cryptography.hazmat.primitives.asymmetric import ec

from redstone_agent.cloud import enrolment, protocol
from redstone_agent.cloud.config import CloudConfig
from redstone_agent.cloud.errors import CloudProtocolError, CloudUnavailable
from redstone_agent.cloud.http import classify, make_session, read_capped
from redstone_agent.cloud.messages import ManifestAck, Offer, OfferedImage, PollResult
from redstone_agent.retry import RetryPolicy

__all__ = ["DeviceClient", "ManifestAck", "Offer", "OfferedImage", "PollResult"]

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class _Answer:
    """Status, headers and a bounded body of one HTTP exchange."""

    status: int
    headers: Mapping[str, str]
    body: bytes


def _request(
    session: requests.Session,
    config: CloudConfig,
    method: str,
    path: str,
    limit: int,
    *,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    data: bytes | None = None,
    auth: tuple[str, str] | None = None,
) -> _Answer:
    """One request; the body is read only up to ``limit`` (error bodies: their start)."""
    where = protocol.route(method, path)
    base = config.base_url
    timeout = config.timeout
    try:
        response = session.request(
            method,
            base + path,
            headers=dict(headers or {}),
            params=dict(params or {}),
            data=data,
            auth=auth,
            timeout=(timeout, timeout),
            stream=True,
            allow_redirects=False,
        )
    except (requests.RequestException, OSError) as exc:
        raise classify(where, base, exc) from exc
    with response:
        failed = response.status_code >= 300
        cap = protocol.MAX_ERROR_BYTES if failed else limit
        body = read_capped(where, response.raw, cap, timeout, truncate=failed)
    return _Answer(response.status_code, response.headers, body)


def enroll(config: CloudConfig, token: str) -> str:
    """First certificate over EST ``simpleenroll`` with a one-time enrollment token; the
    new key and certificate go to ``config.key``/``config.cert``. Returns its serial."""
    if config.cert is None or config.key is None:
        raise CloudProtocolError("EST", "cert and key paths are needed to enroll")
    key_pem, csr = enrolment.new_key_and_csr(config.vin)
    where = protocol.route("POST", enrolment.SIMPLEENROLL)
    anonymous = dataclasses.replace(config, cert=None, key=None)
    with make_session(anonymous) as session:
        answer = _request(
            session,
            config,
            "POST",
            enrolment.SIMPLEENROLL,
            enrolment.MAX_ANSWER_BYTES,
            headers={"Content-Type": enrolment.CSR_TYPE},
            data=csr,
            auth=(config.vin, token),
        )
    protocol.check_status(where, answer.status, answer.body)
    cert_pem = enrolment.certificate_for(where, answer.body, enrolment.public_of(key_pem))
    enrolment.install_pair(config.key, config.cert, key_pem, cert_pem)
    return enrolment.serial_of(cert_pem)


class DeviceClient:
    """Poll, nonce, manifest, events and logs for one vehicle (docs/api.md §3)."""

    def __init__(
        self,
        config: CloudConfig,
        *,
        session: requests.Session | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        """``session``: use this one as it is (its TLS settings win over ``config``'s) and
        leave it open on ``close``. ``sleep``/``rng`` time the retries (tests pass fakes)."""
        self.config = config
        self._own_session = session is None
        self.session: requests.Session = session or make_session(config)
        self.retry = retry or RetryPolicy(timeout=config.timeout)
        self._sleep = sleep
        self._rng = rng
        base = config.base_url
        self.director_url = f"{base}/uptane/director/{config.vin}/"
        self.image_url = f"{base}/uptane/image/"
        self.targets_url = f"{base}/api/v1/device/targets/"
        self._poll_memory: protocol.PollMemory | None = None

    # --- plumbing ------------------------------------------------------------------------------

    def _exchange(
        self,
        method: str,
        path: str,
        limit: int,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        data: bytes | None = None,
    ) -> _Answer:
        """One request; the body is read only up to ``limit`` (error bodies: their start)."""
        return _request(
            self.session,
            self.config,
            method,
            path,
            limit,
            headers=headers,
            params=params,
            data=data,
        )

    def _retrying(self, attempt: Callable[[], T]) -> T:
        """``attempt()``, again after a jittered pause while it fails transiently."""
        delays = self.retry.delays(self._rng)
        tries = 1
        while True:
            try:
                return attempt()
            except CloudUnavailable as exc:
                pause = next(delays, None)
                if pause is None:
                    raise
                tries += 1
                log.info("%s; try %d in %.1f s", exc, tries, pause)
                self._sleep(pause)

    # --- the device API ------------------------------------------------------------------------

    def poll(self) -> PollResult:
        """What the backend wants the vehicle to do; conditional after the first answer."""

        def attempt() -> PollResult:
            memory = self._poll_memory
            answer = self._exchange(
                "GET",
                protocol.POLL,
                protocol.MAX_POLL_BYTES,
                headers=protocol.poll_headers(memory),
            )
            try:
                parsed = protocol.parse_poll(
                    answer.status, answer.headers, answer.body, vin=self.config.vin, memory=memory
                )
            except CloudProtocolError:
                if memory is not None:  # one bad answer must not wedge the conditional poll
                    self._poll_memory = memory.without_etag()
                raise
            self._poll_memory = parsed.memory
            return parsed.result

        result = self._retrying(attempt)
        offer = result.update
        news = f"campaign {offer.campaign} ({offer.state})" if offer else "no update"
        log.debug("poll: %s%s", news, "" if result.changed else " (unchanged)")
        return result

    def nonce(self) -> str:
        """A fresh single-use nonce for the next vehicle manifest."""

        def attempt() -> str:
            answer = self._exchange("POST", protocol.NONCE, protocol.MAX_NONCE_BYTES)
            return protocol.parse_nonce(answer.status, answer.body)

        return self._retrying(attempt)

    def post_manifest(self, manifest: bytes) -> ManifestAck:
        """Upload a signed vehicle manifest (``uptane.manifests.sign_vehicle_manifest``).

        Never retried (see the module docstring). A ``CloudConflict`` means the
        nonce was not issued or already used: get a new one and sign again.
        """
        answer = self._exchange(
            "POST",
            protocol.MANIFEST,
            protocol.MAX_ACK_BYTES,
            headers={"Content-Type": "application/json"},
            data=manifest,
        )
        return protocol.parse_manifest_ack(answer.status, answer.body)

    def event(
        self,
        kind: str,
        campaign: str | None,
        *,
        ecu_serial: str = "",
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """Report an event (``download_started``, ``install_failed``, ``consent_given``...)."""
        body = protocol.event_body(kind, campaign, ecu_serial, detail)

        def attempt() -> None:
            answer = self._exchange(
                "POST",
                protocol.EVENTS,
                protocol.MAX_ACK_BYTES,
                headers={"Content-Type": "application/json"},
                data=body,
            )
            protocol.check_event_ack(answer.status, answer.body)

        self._retrying(attempt)

    def upload_log(self, campaign: str | None, source: str, text: str) -> int:
        """Upload a log excerpt; returns the backend's id for it."""
        body = protocol.log_body(text)

        def attempt() -> int:
            answer = self._exchange(
                "POST",
                protocol.LOGS,
                protocol.MAX_ACK_BYTES,
                headers={"Content-Type": "text/plain; charset=utf-8"},
                params=protocol.log_params(campaign, source),
                data=body,
            )
            return protocol.parse_log_ack(answer.status, answer.body)

        return self._retrying(attempt)

    def renew_certificate(self) -> str:
        """Swap the vehicle's key and certificate for new ones over EST ``simplereenroll``,
        authenticated by the current pair; returns the new certificate's serial (hex).

        New connections present the new pair; the old certificate stays valid at the
        backend until it expires or is revoked, so a lost answer is simply retried."""
        config = self.config
        if config.cert is None or config.key is None:
            raise CloudProtocolError("EST", "no client certificate configured to renew")
        key_pem, csr = enrolment.new_key_and_csr(config.vin)
        cert_pem = self.reenroll(csr, enrolment.public_of(key_pem))
        enrolment.install_pair(config.key, config.cert, key_pem, cert_pem)
        return enrolment.serial_of(cert_pem)

    def reenroll(self, csr: bytes, public: ec.EllipticCurvePublicKey) -> bytes:
        """EST ``simplereenroll`` over this connection's identity: the PEM certificate
        for ``public`` (the key that signed ``csr``). Pooled connections are closed,
        so the next request connects afresh (with the new certificate, once installed)."""
        where = protocol.route("POST", enrolment.SIMPLEREENROLL)

        def attempt() -> _Answer:
            return self._exchange(
                "POST",
                enrolment.SIMPLEREENROLL,
                enrolment.MAX_ANSWER_BYTES,
                headers={"Content-Type": enrolment.CSR_TYPE},
                data=csr,
            )

        answer = self._retrying(attempt)
        protocol.check_status(where, answer.status, answer.body)
        cert_pem = enrolment.certificate_for(where, answer.body, public)
        for adapter in self.session.adapters.values():
            adapter.close()  # pooled connections still present the old certificate
        return cert_pem

    def forget_poll(self) -> None:
        """Forget the last poll: the next one is unconditional and reports ``changed=True``
        (e.g. after the Master restarted a campaign from its journal)."""
        self._poll_memory = None

    def close(self) -> None:
        """Close the session if this client made it."""
        if self._own_session:
            self.session.close()

    def __enter__(self) -> DeviceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
