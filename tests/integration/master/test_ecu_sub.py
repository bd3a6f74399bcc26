"""SubPort against a real ``redstone-sub`` daemon over real SOME/IP (someipyd per namespace).

One Sub in its own network namespace, the test process as the Master (its
traffic through the Master node's someipyd), the fleet's HTTP server as the
Master's cache. "Reboot" is the fleet's: the Sub drops a marker file, the
test power-cycles it onto the slot the virtual bootloader picks. The
scenarios run in order and each leaves the Sub settled.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator, Iterator

import pytest

from redstone_agent.master.ecu_sub import SubPort, install_request
from redstone_agent.master.errors import EcuFailed
from redstone_agent.master.ports import EcuJob, EcuStanding, Image
from redstone_agent.master.topology import EcuKind, EcuSpec, TimeoutSettings
from redstone_agent.someip.client import SubClient, open_sub_client
from redstone_agent.someip.someipy_binding import SomeipyStack
from redstone_agent.uptane.keys import load_signer
from redstone_agent.uptane.manifests import new_nonce, verify_ecu_manifest
from tests.integration.sub.fleet import CACHE_PORT, Fleet, SubNode
from tests.integration.sub.test_sub_someip import forge_director_targets
from tests.support import require_tool

pytestmark = [pytest.mark.root, pytest.mark.slow]

WAIT = 30.0
TIMEOUTS = TimeoutSettings(install_s=60.0, activate_s=60.0, rollback_s=60.0)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    for tool in ("ip", "dbus-daemon", "fw_setenv", "fw_printenv"):
        require_tool(tool)
    with Fleet(tmp_path_factory.mktemp("fleet"), sub_count=1) as vehicle:
        for sub in vehicle.subs:
            sub.start()
        yield vehicle


@pytest.fixture(scope="module")
def sub(fleet: Fleet) -> SubNode:
    return fleet.subs[0]


@contextlib.asynccontextmanager
async def port_for(fleet: Fleet, sub: SubNode) -> AsyncIterator[tuple[SubPort, SubClient]]:
    """A SubPort on a fresh Master-side client; the Sub is power-cycled whenever it asks."""
    stack = SomeipyStack(str(fleet.master.socket_path))
    await stack.connect()
    client = open_sub_client(stack, sub.name, sub.instance_id, fleet.master.ip)

    async def reboot_on_request() -> None:
        while True:
            if sub.reboot_marker.exists():
                await asyncio.to_thread(sub.reboot)
            await asyncio.sleep(0.05)

    rebooter = asyncio.create_task(reboot_on_request())
    try:
        await client.wait_available(WAIT)
        spec = EcuSpec(
            serial=sub.serial,
            kind=EcuKind.SUB,
            hardware_id=sub.hardware_id,
            instance_id=sub.instance_id,
        )
        yield SubPort(spec, client, TIMEOUTS), client
    finally:
        rebooter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await rebooter
        await stack.close()


def job_for(fleet: Fleet, sub: SubNode, filename: str, bundle: bytes | None = None) -> EcuJob:
    """The job the engine would build: image and bundle served by the Master's cache."""
    data = (fleet.cache_dir / filename).read_bytes()
    base = f"http://{fleet.master.ip}:{CACHE_PORT}"
    bundle = fleet.bundle() if bundle is None else bundle
    (fleet.cache_dir / f"{filename}.bundle").write_bytes(bundle)
    image = Image(
        target=filename,
        sha256=hashlib.sha256(data).hexdigest(),
        length=len(data),
        version=filename,
        path=fleet.cache_dir / filename,
        url=f"{base}/{filename}",
    )
    return EcuJob(sub.serial, new=image, bundle=bundle, bundle_url=f"{base}/{filename}.bundle")


def test_install_is_a_no_op_when_ready_and_rollback_discards_it(fleet: Fleet, sub: SubNode) -> None:
    fleet.publish(sub, "adas-1.0.img", os.urandom(1_200_000), release_counter=1)
    job = job_for(fleet, sub, "adas-1.0.img")
    progress: list[int] = []

    async def scenario() -> None:
        async with port_for(fleet, sub) as (port, client):
            await client.wait_subscribed(WAIT)
            assert await port.standing(job) is EcuStanding.OLD
            result = await port.install(job, lambda done, _total: progress.append(done))
            assert (result.detail, result.bytes_sent, result.used_delta) == (
                "installed",
                job.new.length,
                False,
            )
            assert await port.standing(job) is EcuStanding.INSTALLED
            before = await client.get_status()
            again = await port.install(job, lambda _done, _total: None)
            assert again.detail == "already installed"
            after = await client.get_status()
            assert (after.state.name, after.seq) == ("READY", before.seq)  # nothing was sent
            await port.rollback(job)
            assert await port.standing(job) is EcuStanding.OLD
            assert (await client.get_status()).state.name == "IDLE"

    asyncio.run(scenario())
    assert progress and max(progress) == job.new.length


def test_activate_reaches_a_healthy_trial_and_rollback_returns_to_the_old_slot(
    fleet: Fleet, sub: SubNode
) -> None:
    job = job_for(fleet, sub, "adas-1.0.img")

    async def scenario() -> None:
        async with port_for(fleet, sub) as (port, client):
            await port.install(job, lambda _done, _total: None)
            result = await port.activate(job)
            assert "awaiting commit" in result.detail
            assert sub.booted() == "B"
            assert await port.standing(job) is EcuStanding.TRIAL
            seq = (await client.get_status()).seq
            await port.activate(job)  # already on trial: nothing sent
            assert (await client.get_status()).seq == seq
            await port.rollback(job)  # the Sub marks the slot bad and reboots into A
            assert await port.standing(job) is EcuStanding.OLD
            assert (await client.get_status()).state.name == "ROLLED_BACK"

    asyncio.run(scenario())
    assert sub.booted() == "A"


def test_commit_makes_it_new_and_a_committed_sub_refuses_rollback(
    fleet: Fleet, sub: SubNode
) -> None:
    job = job_for(fleet, sub, "adas-1.0.img")

    async def scenario() -> None:
        async with port_for(fleet, sub) as (port, client):
            await port.install(job, lambda _done, _total: None)
            await port.activate(job)
            assert (await port.commit(job)).detail == "committed adas-1.0.img"
            assert await port.standing(job) is EcuStanding.NEW
            seq = (await client.get_status()).seq
            for step in (port.commit, port.activate):
                await step(job)  # already committed: nothing sent
            assert (await port.install(job, lambda _d, _t: None)).detail.startswith("already runs")
            assert (await client.get_status()).seq == seq
            nonce = new_nonce()
            key = load_signer(sub.workdir / "trust" / "ecu.pem").public_key
            manifest = verify_ecu_manifest(
                await port.manifest(nonce), key, expected_serial=sub.serial, expected_nonce=nonce
            )
            assert (manifest.filename, manifest.sha256) == (job.new.target, job.new.sha256)
            with pytest.raises(EcuFailed, match="cannot be rolled back over SOME/IP"):
                await port.rollback(job)

    asyncio.run(scenario())
    assert sub.booted() == "B"


def test_bundle_the_sub_rejects_is_one_line_verification_failed(fleet: Fleet, sub: SubNode) -> None:
    fleet.publish(sub, "adas-2.0.img", os.urandom(100_000), release_counter=2)
    tampered = forge_director_targets(fleet.bundle(), "adas-2.0.img", length=1)
    job = job_for(fleet, sub, "adas-2.0.img", bundle=tampered)

    async def scenario() -> None:
        async with port_for(fleet, sub) as (port, client):
            seq = (await client.get_status()).seq
            with pytest.raises(EcuFailed) as refused:
                await port.install(job, lambda _done, _total: None)
            message = str(refused.value)
            assert message.startswith(f"{sub.serial}: VERIFICATION_FAILED: metadata rejected")
            assert "\n" not in message
            assert (await client.get_status()).seq == seq  # nothing changed on the Sub
            assert await port.standing(job) is EcuStanding.OLD

    asyncio.run(scenario())


def test_steps_resume_what_a_killed_master_left_under_way(fleet: Fleet, sub: SubNode) -> None:
    """A Master killed right after Install or Activate went out: the re-run waits, sends nothing."""
    fleet.publish(sub, "adas-3.0.img", os.urandom(1_500_000), release_counter=3)
    job = job_for(fleet, sub, "adas-3.0.img")

    async def scenario() -> None:
        async with port_for(fleet, sub) as (port, client):
            await client.put_metadata_from(job.bundle_url, job.bundle)
            await client.install(install_request(job))  # ... and the Master died here
            assert await port.standing(job) in (EcuStanding.INSTALLING, EcuStanding.INSTALLED)
            await port.install(job, lambda _done, _total: None)  # no WRONG_STATE: it waits
            assert await port.standing(job) is EcuStanding.INSTALLED
            await client.activate()  # ... and died again; the Sub reboots meanwhile
            assert "awaiting commit" in (await port.activate(job)).detail
            await port.commit(job)
            assert await port.standing(job) is EcuStanding.NEW

    asyncio.run(scenario())
    assert sub.booted() == "A"
