"""The real Sub daemon, SIGKILLed mid-download, continues from its journaled offset.

The Master's cache (``cache_server.py``) sends ``slow-*`` files at ~1 MiB/s
and logs the Range of every request. The test waits until the Sub's slot
journal names a durable offset, cuts the power, starts the daemon again and
checks that recovery asked the cache for exactly the rest, that the slot
holds the signed image, and that the node boots and commits it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from redstone_agent.someip.interface import SubState
from tests.integration.sub.fleet import Fleet, SubNode
from tests.integration.sub.test_sub_someip import WAIT, healthy_verifying, master
from tests.support import require_tool

pytestmark = [pytest.mark.root, pytest.mark.slow]

S = SubState
IMAGE_SIZE = 10 << 20


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    for tool in ("ip", "dbus-daemon", "fw_setenv", "fw_printenv"):
        require_tool(tool)
    with Fleet(tmp_path_factory.mktemp("resume"), sub_count=1, slot_size=16 << 20) as vehicle:
        for sub in vehicle.subs:
            sub.start()
        yield vehicle


def slot_journal(sub: SubNode) -> dict[str, Any]:
    """The slot layer's record on disk, read without touching the journal's temporaries."""
    try:
        record = json.loads((sub.virtual.config.state_dir / "slots.json").read_bytes())
    except (OSError, ValueError):
        return {}
    state: dict[str, Any] = record["state"]
    return state


def wait_for_resume_point(sub: SubNode) -> None:
    while not (slot_journal(sub).get("resume") or {}).get("offset"):
        assert sub.proc is not None and sub.proc.poll() is None, f"daemon died; see {sub.log}"
        time.sleep(0.05)


def test_sub_killed_mid_download_resumes_by_range_from_its_journaled_offset(
    fleet: Fleet,
) -> None:
    sub = fleet.subs[0]
    name = "slow-sub1-2.0.img"
    image = os.urandom(IMAGE_SIZE)
    fleet.publish(sub, name, image, release_counter=2)

    async def scenario() -> int:
        async with master(fleet, events=True) as clients:
            client = clients[sub.name]
            await client.put_metadata(fleet.bundle())
            await client.install(fleet.install_request(name))
            await client.wait_for_state({S.TRANSFERRING}, WAIT)
            await asyncio.to_thread(wait_for_resume_point, sub)
            sub.kill(signal.SIGKILL)
            offset = int(slot_journal(sub)["resume"]["offset"])
            sub.start()
            await client.wait_available(WAIT)
            status = await client.wait_for_state({S.READY, S.FAILED}, 60.0)
            assert status.state is S.READY, status
            await client.activate()
            await asyncio.to_thread(sub.wait_reboot_request)
            assert await asyncio.to_thread(sub.reboot) == "B"
            await client.wait_for_state({S.VERIFYING}, WAIT, until=healthy_verifying)
            await client.commit()
            await client.wait_for_state({S.COMMITTED}, WAIT)
            return offset

    offset = asyncio.run(scenario())
    assert 0 < offset < IMAGE_SIZE
    requests = [
        line.split()
        for line in (fleet.workdir / "cache.log").read_text().splitlines()
        if line.startswith(f"GET /{name} ")
    ]
    assert [request[2:] for request in requests] == [
        ["200", "range=-"],
        ["206", f"range=bytes={offset}-"],
    ], requests
    log = sub.log.read_text()
    assert f"state TRANSFERRING (resuming interrupted install at byte {offset})" in log
    assert f"at byte {offset} (prefix re-hashed)" in log
    assert sub.booted() == "B"
    assert sub.slot_bytes("B", IMAGE_SIZE) == image
