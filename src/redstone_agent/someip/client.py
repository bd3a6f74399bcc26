"""The Master's handle on one Sub: typed calls, status tracking, waiting.

Events are a hint, polling is the truth: ``wait_for_state`` wakes on STATUS
events but also polls GetStatus, so a lost UDP event or a Sub that rebooted
in between never leaves the Master waiting forever.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Collection
from typing import TypeVar

from redstone_agent.aio import wait_event
from redstone_agent.someip.binding import ClientBinding, Stack
from redstone_agent.someip.errors import (
    CallTimeout,
    MalformedPayload,
    RemoteError,
    ServiceUnavailable,
    SomeIpError,
)
from redstone_agent.someip.interface import EventId, MethodId, ResultCode, SubState
from redstone_agent.someip.messages import (
    Blob,
    Info,
    InstallRequest,
    ManifestRequest,
    MetadataLocation,
    Progress,
    ProxiedSerial,
    ProxiedStatus,
    ProxiedStatusRequest,
    ProxyInstallRequest,
    ProxyManifestRequest,
    Response,
    Status,
)

log = logging.getLogger(__name__)
_S = TypeVar("_S", Status, ProxiedStatus)

POLL_CALL_TIMEOUT_S = 1.0
"""Deadline of one GetStatus poll inside :meth:`SubClient.wait_for_state`."""

StatusListener = Callable[[Status], None]
ProgressListener = Callable[[Progress], None]
ProxiedListener = Callable[[ProxiedStatus], None]


class SubClient:
    """Calls one Sub instance; every call has a deadline (``timeout`` seconds)."""

    def __init__(self, binding: ClientBinding, name: str, *, timeout: float = 3.0) -> None:
        self.name = name
        self._binding = binding
        self._timeout = timeout
        self._status_listeners: list[StatusListener] = []
        self._progress_listeners: list[ProgressListener] = []
        self._proxied_listeners: list[ProxiedListener] = []
        self._changed = asyncio.Event()
        self._proxied_changed = asyncio.Event()
        self.last_proxied: dict[str, ProxiedStatus] = {}
        """Newest ProxiedStatus per serial (events and polls)."""
        self._event_seen = asyncio.Event()
        self.last_status: Status | None = None
        binding.subscribe(self._on_event)

    # -- events ------------------------------------------------------------

    def on_status(self, listener: StatusListener) -> None:
        self._status_listeners.append(listener)

    def on_progress(self, listener: ProgressListener) -> None:
        self._progress_listeners.append(listener)

    def on_proxied(self, listener: ProxiedListener) -> None:
        """PROXIED_STATUS events (1.1) of every UDS ECU behind this Sub."""
        self._proxied_listeners.append(listener)

    def _on_event(self, event_id: int, payload: bytes) -> None:
        self._event_seen.set()
        try:
            if event_id == EventId.STATUS:
                status = Status.decode(payload)
                self._remember(status)
                for listener in self._status_listeners:
                    listener(status)
            elif event_id == EventId.PROGRESS:
                progress = Progress.decode(payload)
                for p_listener in self._progress_listeners:
                    p_listener(progress)
            elif event_id == EventId.PROXIED_STATUS:
                proxied = ProxiedStatus.decode(payload)
                self._remember_proxied(proxied)
                for x_listener in self._proxied_listeners:
                    x_listener(proxied)
        except MalformedPayload as exc:
            log.warning("%s: dropped malformed event 0x%04x: %s", self.name, event_id, exc)

    def _remember(self, status: Status) -> None:
        self.last_status = status
        self._changed.set()

    def _remember_proxied(self, status: ProxiedStatus) -> None:
        known = self.last_proxied.get(status.serial)
        if known is None or status.seq >= known.seq:
            self.last_proxied[status.serial] = status
        self._proxied_changed.set()

    # -- calls -------------------------------------------------------------

    async def _call(
        self, method: MethodId, payload: bytes = b"", timeout: float | None = None
    ) -> bytes:
        raw = await self._binding.call(method, payload, timeout or self._timeout)
        response = Response.decode(raw)
        if response.code is not ResultCode.OK:
            raise RemoteError(response.code, response.detail)
        return response.body

    async def get_info(self) -> Info:
        return Info.decode(await self._call(MethodId.GET_INFO))

    async def get_status(self, timeout: float | None = None) -> Status:
        status = Status.decode(await self._call(MethodId.GET_STATUS, timeout=timeout))
        self._remember(status)
        return status

    async def get_manifest(self, nonce: bytes) -> bytes:
        body = await self._call(MethodId.GET_MANIFEST, ManifestRequest(nonce).encode())
        return Blob.decode(body).data

    async def put_metadata(self, bundle: bytes) -> None:
        await self._call(MethodId.PUT_METADATA, Blob(bundle).encode())

    async def put_metadata_from(self, url: str, bundle: bytes) -> None:
        """PutMetadata for a bundle the Sub must fetch from ``url`` (the Master's cache)."""
        location = MetadataLocation(url, hashlib.sha256(bundle).digest(), len(bundle))
        await self._call(MethodId.PUT_METADATA_FROM, location.encode())

    async def install(self, request: InstallRequest) -> None:
        await self._call(MethodId.INSTALL, request.encode())

    async def activate(self) -> None:
        await self._call(MethodId.ACTIVATE)

    async def commit(self) -> None:
        await self._call(MethodId.COMMIT)

    async def rollback(self) -> None:
        await self._call(MethodId.ROLLBACK)

    async def cancel(self) -> None:
        await self._call(MethodId.CANCEL)

    # -- 1.1: UDS ECUs behind the Sub ------------------------------------------

    async def get_proxied_status(
        self, serial: str, *, refresh: bool = False, timeout: float | None = None
    ) -> ProxiedStatus:
        """Where UDS ECU ``serial`` behind this Sub stands; ``refresh`` re-reads its version."""
        request = ProxiedStatusRequest(serial, refresh).encode()
        body = await self._call(MethodId.GET_PROXIED_STATUS, request, timeout=timeout)
        status = ProxiedStatus.decode(body)
        if status.serial != serial:
            raise MalformedPayload(f"asked for {serial}, the answer is about {status.serial}")
        self._remember_proxied(status)
        return status

    async def proxy_manifest(self, serial: str, nonce: bytes) -> bytes:
        request = ProxyManifestRequest(serial, nonce).encode()
        return Blob.decode(await self._call(MethodId.PROXY_MANIFEST, request)).data

    async def proxy_install(self, request: ProxyInstallRequest) -> None:
        await self._call(MethodId.PROXY_INSTALL, request.encode())

    async def proxy_rollback(self, serial: str) -> None:
        await self._call(MethodId.PROXY_ROLLBACK, ProxiedSerial(serial).encode())

    # -- waiting -----------------------------------------------------------

    async def wait_available(self, timeout: float) -> None:
        """Wait until SD knows the instance (first offer, or after a Sub reboot)."""
        deadline = time.monotonic() + timeout
        while not await self._binding.available():
            if time.monotonic() > deadline:
                raise ServiceUnavailable(f"{self.name} not offered within {timeout:g}s")
            await asyncio.sleep(0.05)

    async def wait_subscribed(self, timeout: float) -> None:
        """Wait for the first event: proof the subscription is acknowledged (heartbeat)."""
        if not await wait_event(self._event_seen, timeout):
            raise ServiceUnavailable(f"{self.name}: no status event within {timeout:g}s")

    async def wait_for_state(
        self,
        states: Collection[SubState],
        timeout: float,
        *,
        poll: float = 0.5,
        until: Callable[[Status], bool] = lambda _status: True,
    ) -> Status:
        """Return the first status in *states* that satisfies *until*; survives Sub restarts."""

        def done(status: Status | None) -> bool:
            return status is not None and status.state in states and until(status)

        wanted = ", ".join(s.name for s in states)
        return await self._wait_until(
            wanted,
            lambda: self.last_status,
            self.get_status,
            done,
            changed=self._changed,
            timeout=timeout,
            poll=poll,
        )

    async def wait_for_proxied(
        self,
        serial: str,
        timeout: float,
        until: Callable[[ProxiedStatus], bool],
        *,
        poll: float = 0.5,
    ) -> ProxiedStatus:
        """The first ProxiedStatus of ``serial`` satisfying ``until`` (events wake us,
        GetProxiedStatus is the truth); survives the Sub's restarts like wait_for_state."""

        def done(status: ProxiedStatus | None) -> bool:
            return status is not None and until(status)

        def ask(timeout: float) -> Awaitable[ProxiedStatus]:
            return self.get_proxied_status(serial, timeout=timeout)

        return await self._wait_until(
            serial,
            lambda: self.last_proxied.get(serial),
            ask,
            done,
            changed=self._proxied_changed,
            timeout=timeout,
            poll=poll,
        )

    async def _wait_until(
        self,
        wanted: str,
        last: Callable[[], _S | None],
        ask: Callable[[float], Awaitable[_S]],
        done: Callable[[_S | None], bool],
        *,
        changed: asyncio.Event,
        timeout: float,
        poll: float,
    ) -> _S:
        """The first status ``done`` accepts: the last event's, else a fresh poll's.

        A poll sent while the Sub reboots is lost; waiting the full call timeout
        for it would also ignore the events that arrive meanwhile, so polls get a
        short deadline and events wake the loop between them."""
        deadline = time.monotonic() + timeout
        poll_timeout = min(self._timeout, max(2 * poll, POLL_CALL_TIMEOUT_S))
        while True:
            status = last()
            if not done(status):
                try:
                    status = await ask(poll_timeout)
                except (CallTimeout, ServiceUnavailable) as exc:
                    log.debug("%s: status poll failed: %s", self.name, exc)
            if status is not None and done(status):
                return status
            left = deadline - time.monotonic()
            if left <= 0:
                seen = status.state.name if status is not None else "nothing"
                raise SomeIpError(f"{self.name}: waited {timeout:g}s for {wanted}, last saw {seen}")
            changed.clear()
            await wait_event(changed, min(poll, left))


_clients: weakref.WeakKeyDictionary[Stack, dict[int, SubClient]] = weakref.WeakKeyDictionary()


def open_sub_client(
    stack: Stack,
    name: str,
    instance_id: int,
    local_address: str,
    *,
    base_port: int = 30600,
    timeout: float = 3.0,
) -> SubClient:
    """The client for one Sub on ``stack``; each instance gets its own local port pair.

    One per Sub and stack: the Sub's own port and the ports of the UDS ECUs behind
    it share it. Two would bind the same ports with the same client id and session
    counter, and each could take the other's answers.
    """
    known = _clients.setdefault(stack, {})
    client = known.get(instance_id)
    if client is None:
        port = base_port + 2 * instance_id
        binding = stack.client(instance_id, local_address, port)
        client = known[instance_id] = SubClient(binding, name, timeout=timeout)
    return client
