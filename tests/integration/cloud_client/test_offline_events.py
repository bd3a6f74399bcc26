"""The Master's cloud adapter when the cloud cannot be reached: events go quiet.

Events are reports (the signed manifest is the truth). A vehicle offline — a campaign
installed from a USB bundle — fires one per state change; each used to run its own retry
loop against a refused connection, queued behind the last, for the whole campaign. After
one event finds the cloud unreachable the next ones are dropped unsent for
``EVENT_QUIET_S``, then tried again. A real ``DeviceClient`` against a closed port, then
against the real backend.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from redstone_agent.cloud import CloudConfig, CloudUnavailable, DeviceClient
from redstone_agent.master.adapters import EVENT_QUIET_S, CloudAdapter
from redstone_agent.retry import RetryPolicy
from redstone_agent.uptane.keys import generate_signer
from tests.integration.cloud_client.backend import Backend

RETRY = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.01)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_events_go_quiet_after_the_cloud_proved_unreachable_then_resume(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    car = backend.register(31)
    online = CloudConfig(url=backend.url, vin=car.vin, cert=car.cert, key=car.key, ca=backend.ca)
    offline = replace(online, url="https://127.0.0.1:9")
    clock = Clock()
    pauses: list[float] = []

    def adapter_for(client: DeviceClient) -> CloudAdapter:
        signer = generate_signer()
        return CloudAdapter(
            client, vin=car.vin, primary_serial=car.primary, ecus={}, signer=signer, clock=clock
        )

    async def scenario() -> None:
        with DeviceClient(offline, retry=RETRY, sleep=pauses.append) as client:
            adapter = adapter_for(client)
            # Fired together, as state changes are: the later ones queue behind the first
            # and, once it found the cloud unreachable, are dropped without a try.
            burst = await asyncio.gather(
                adapter.event("state", "c1", state="downloading"),
                adapter.event("ecu_step", "c1", ecu_serial="e1"),
                adapter.event("state", "c1", state="awaiting"),
                return_exceptions=True,
            )
            assert isinstance(burst[0], CloudUnavailable), burst
            assert burst[1:] == [None, None], burst
            assert len(pauses) == 1  # two attempts, once: the cloud was really tried

            for state in ("awaiting", "transferring", "processing"):
                await adapter.event("state", "c1", state=state)  # dropped, not tried
            assert len(pauses) == 1

            clock.now += EVENT_QUIET_S
            with pytest.raises(CloudUnavailable):
                await adapter.event("state", "c1", state="activating")
            assert len(pauses) == 2  # tried again once the quiet period ended

        with DeviceClient(online, retry=RETRY, sleep=pauses.append) as client:
            await adapter_for(client).event("state", None, state="idle")  # delivered: no error

    with caplog.at_level("INFO", logger="redstone_agent.master.adapters"):
        asyncio.run(scenario())

    quiet = [r.getMessage() for r in caplog.records if "events are not sent" in r.getMessage()]
    assert len(quiet) == 2, quiet  # once per quiet period, not once per dropped event
    assert quiet[0].startswith("cloud unreachable (POST /api/v1/device/events: cannot reach")
