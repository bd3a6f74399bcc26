"""A udsoncan client that speaks in this package's errors.

udsoncan already waits out NRC 0x78 (switching to P2*); this wrapper adds the
0x21 busy-repeat loop and turns library exceptions into one-line errors that
name the ECU and the programming step.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

import isotp
from udsoncan import exceptions as uds_exc
from udsoncan.client import Client
from udsoncan.common.DidCodec import DidCodec

from redstone_agent.uds.config import EcuConfig
from redstone_agent.uds.errors import NegativeResponseError, TransportError, UdsError
from redstone_agent.uds.link import Link

T = TypeVar("T")
BUSY_REPEAT = 0x21
log = logging.getLogger(__name__)


class RawCodec(DidCodec):
    """DID values as raw bytes: fingerprints and versions are opaque to the tester."""

    def encode(self, *values: Any) -> bytes:
        return bytes(values[0])

    def decode(self, payload: bytes) -> bytes:
        return bytes(payload)

    def __len__(self) -> int:
        raise DidCodec.ReadAllRemainingData


def client_config(ecu: EcuConfig) -> dict[str, Any]:
    """udsoncan client settings from the ECU's timing section."""
    prog = ecu.programming
    return {
        "exception_on_negative_response": True,
        "exception_on_invalid_response": True,
        "exception_on_unexpected_response": True,
        "tolerate_zero_padding": True,
        "ignore_all_zero_dtc": True,
        "security_algo": None,
        "security_algo_params": None,
        "dtc_snapshot_did_size": 2,
        "server_address_format": prog.address_bytes * 8,
        "server_memorysize_format": prog.size_bytes * 8,
        "data_identifiers": {ecu.dids.version: RawCodec, ecu.dids.fingerprint: RawCodec},
        "input_output": {},
        "request_timeout": ecu.timing.max_pending,
        "p2_timeout": ecu.timing.p2,
        "p2_star_timeout": ecu.timing.p2_star,
        "standard_version": 2020,
        "use_server_timing": False,
        "extended_data_size": None,
        "nrc78_callback": None,
    }


class UdsSession:
    """One connected UDS conversation with one ECU."""

    def __init__(self, ecu: EcuConfig, link: Link) -> None:
        self.ecu = ecu
        self.link = link
        self.client = Client(link.connection, config=cast(Any, client_config(ecu)))

    def adopt_timing(self, p2_server: float | None, p2_star_server: float | None) -> None:
        """Widen P2/P2* to what the ECU announced in its session-control answer.

        The configured values are a floor: a slow bootloader that announces a
        longer P2* (e.g. for erasing) gets it, a fast one never shortens ours.
        """
        timing = self.ecu.timing
        self.client.set_config("p2_timeout", max(timing.p2, p2_server or 0.0))
        self.client.set_config("p2_star_timeout", max(timing.p2_star, p2_star_server or 0.0))

    def close(self) -> None:
        """Close the link; never raises, the ECU may already be gone."""
        try:
            self.link.close()
        except Exception as exc:  # closing a dead link must not mask the real error
            log.debug("closing link to %s: %s", self.ecu.name, exc)

    def call(self, step: str, request: Callable[[Client], T | None]) -> T:
        """Run ``request``; repeat on NRC 0x21, translate every failure."""
        timing = self.ecu.timing
        for attempt in range(timing.busy_retries + 1):
            try:
                result = request(self.client)
            except uds_exc.NegativeResponseException as exc:
                code = exc.response.code or 0
                if code == BUSY_REPEAT and attempt < timing.busy_retries:
                    log.info("%s: %s busy (NRC 0x21), repeating", self.ecu.name, step)
                    time.sleep(timing.busy_delay)
                    continue
                raise NegativeResponseError(self.ecu.name, step, code) from None
            except uds_exc.TimeoutException as exc:
                raise TransportError(f"ECU {self.ecu.name}: {step} timed out ({exc})") from exc
            except (uds_exc.InvalidResponseException, uds_exc.UnexpectedResponseException) as exc:
                raise UdsError(
                    f"ECU {self.ecu.name}: {step} got a malformed reply ({exc})"
                ) from exc
            except (OSError, isotp.IsoTpError, TimeoutError) as exc:
                raise TransportError(f"ECU {self.ecu.name}: {step} link failed ({exc})") from exc
            if result is None:  # only with suppressed responses, which we never request
                raise UdsError(f"ECU {self.ecu.name}: {step} got no response")
            return result
        raise AssertionError("unreachable")  # pragma: no cover


class Channel:
    """The current session to one ECU; reopens the link after a transient loss."""

    def __init__(self, ecu: EcuConfig, open_link: Callable[[EcuConfig], Link]) -> None:
        self.ecu = ecu
        self._open_link = open_link
        self._session: UdsSession | None = None

    @property
    def session(self) -> UdsSession:
        """The open session, connecting on first use."""
        if self._session is None:
            try:
                self._session = UdsSession(self.ecu, self._open_link(self.ecu))
            except UdsError:
                raise
            except (OSError, isotp.IsoTpError, TimeoutError) as exc:
                raise TransportError(f"ECU {self.ecu.name}: cannot connect ({exc})") from exc
        return self._session

    def call(self, step: str, request: Callable[[Client], T | None], *, retry: bool = True) -> T:
        """:meth:`UdsSession.call` on the current session.

        With ``retry`` a lost link or response is retried on a fresh link; pass
        ``False`` for requests that must not be repeated blindly (keys, blocks).
        """
        attempts = self.ecu.timing.transfer_retries + 1 if retry else 1
        for attempt in range(attempts):
            try:
                return self.session.call(step, request)
            except TransportError as exc:
                if attempt == attempts - 1:
                    raise
                log.warning("%s; retrying", exc)
                self.reconnect(self.ecu.timing.reconnect_delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def drop(self) -> None:
        """Forget the current link (after a loss or an ECU reset)."""
        if self._session is not None:
            self._session.close()
            self._session = None

    def reconnect(self, delay: float) -> None:
        """Drop the link, wait ``delay`` and connect again (retrying until the ECU answers)."""
        self.drop()
        attempts = max(self.ecu.timing.transfer_retries, 1)
        for attempt in range(attempts):
            time.sleep(delay if attempt == 0 else max(delay, self.ecu.timing.reconnect_delay))
            try:
                _ = self.session
                return
            except TransportError:
                if attempt == attempts - 1:
                    raise
