"""Two real Sub daemons driven by a Master-side client over real SOME/IP.

One fleet (namespaces, someipyds, cache, D-Bus) serves the whole module; the
scenarios run in order and each leaves its Sub in a settled state.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import signal
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from redstone_agent.someip.client import SubClient, open_sub_client
from redstone_agent.someip.errors import (
    CallTimeout,
    MalformedPayload,
    RemoteError,
    ServiceUnavailable,
)
from redstone_agent.someip.interface import MethodId, ResultCode, SubState
from redstone_agent.someip.messages import Response, Status
from redstone_agent.someip.someipy_binding import SomeipyStack
from redstone_agent.uptane.keys import load_signer
from redstone_agent.uptane.manifests import new_nonce, verify_ecu_manifest
from tests.integration.sub.fleet import CACHE_PORT, Fleet, SubNode
from tests.support import require_tool

pytestmark = [pytest.mark.root, pytest.mark.slow]

S = SubState
WAIT = 30.0


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    for tool in ("ip", "dbus-daemon", "fw_setenv", "fw_printenv"):
        require_tool(tool)
    with Fleet(tmp_path_factory.mktemp("fleet"), sub_count=2) as vehicle:
        for sub in vehicle.subs:
            sub.start()
        yield vehicle


@contextlib.asynccontextmanager
async def master(fleet: Fleet, *, events: bool = False) -> AsyncIterator[dict[str, SubClient]]:
    """Master-side clients for every Sub; with *events*, wait until STATUS events flow."""
    stack = SomeipyStack(str(fleet.master.socket_path))
    await stack.connect()
    clients = {
        sub.name: open_sub_client(stack, sub.name, sub.instance_id, fleet.master.ip)
        for sub in fleet.subs
    }
    try:
        for client in clients.values():
            await client.wait_available(WAIT)
            if events:
                await client.wait_subscribed(WAIT)
        yield clients
    finally:
        await stack.close()


def healthy_verifying(status: Status) -> bool:
    return "awaiting commit" in status.detail


async def install_and_activate(fleet: Fleet, client: SubClient, sub: SubNode, name: str) -> None:
    await client.put_metadata(fleet.bundle())
    await client.install(fleet.install_request(name))
    await client.wait_for_state({S.READY}, WAIT)
    await client.activate()
    await asyncio.to_thread(sub.wait_reboot_request)
    await asyncio.to_thread(sub.reboot)


def test_two_subs_update_reboot_and_commit(fleet: Fleet) -> None:
    images = {sub.name: os.urandom(300_000) for sub in fleet.subs}
    for sub in fleet.subs:
        fleet.publish(sub, f"{sub.name}-1.0.img", images[sub.name], release_counter=1)

    seen: dict[str, list[SubState]] = {sub.name: [] for sub in fleet.subs}

    async def scenario() -> None:
        async with master(fleet, events=True) as clients:
            for sub in fleet.subs:
                clients[sub.name].on_status(lambda st, n=sub.name: seen[n].append(st.state))
                info = await clients[sub.name].get_info()
                assert (info.ecu_serial, info.booted_slot, info.state) == (sub.serial, "A", S.IDLE)
            await asyncio.gather(
                *(
                    install_and_activate(fleet, clients[s.name], s, f"{s.name}-1.0.img")
                    for s in fleet.subs
                )
            )
            for sub in fleet.subs:
                client = clients[sub.name]
                await client.wait_available(WAIT)
                await client.wait_for_state({S.VERIFYING}, WAIT, until=healthy_verifying)
                await client.commit()
                status = await client.wait_for_state({S.COMMITTED}, WAIT)
                assert status.target == f"{sub.name}-1.0.img"
                info = await client.get_info()
                assert (info.booted_slot, info.current_target) == ("B", f"{sub.name}-1.0.img")
                nonce = new_nonce()
                envelope = json.loads(await client.get_manifest(nonce.encode()))
                ecu_key = load_signer(sub.workdir / "trust" / "ecu.pem").public_key
                manifest = verify_ecu_manifest(
                    envelope, ecu_key, expected_serial=sub.serial, expected_nonce=nonce
                )
                assert manifest.filename == f"{sub.name}-1.0.img"
                assert manifest.sha256 == hashlib.sha256(images[sub.name]).hexdigest()
                assert manifest.report["state"] == "COMMITTED"

    asyncio.run(scenario())
    for sub in fleet.subs:
        # STATUS events reached the Master, also across the reboot.
        assert {S.TRANSFERRING, S.READY, S.VERIFYING, S.COMMITTED} <= set(seen[sub.name])
        image = images[sub.name]
        assert sub.booted() == "B"
        assert sub.slot_bytes("B", len(image)) == image


def test_failed_health_check_falls_back_and_is_reported(fleet: Fleet) -> None:
    sub = fleet.subs[1]
    fleet.publish(sub, "sub2-2.0.img", os.urandom(200_000), release_counter=2)
    sub.health_flag.unlink()

    async def scenario() -> None:
        async with master(fleet) as clients:
            client = clients[sub.name]
            # The bundle travels the other way too: fetched by the Sub from the cache.
            bundle = fleet.bundle()
            (fleet.cache_dir / "bundle.json").write_bytes(bundle)
            url = f"http://{fleet.master.ip}:{CACHE_PORT}/bundle.json"
            with pytest.raises(RemoteError) as wrong:
                await client.put_metadata_from(url, bundle + b" ")
            assert wrong.value.code is ResultCode.VERIFICATION_FAILED
            await client.put_metadata_from(url, bundle)
            await install_and_activate(fleet, client, sub, "sub2-2.0.img")
            # New slot A boots, its health check fails: mark bad, reboot again.
            await asyncio.to_thread(sub.wait_reboot_request)
            await asyncio.to_thread(sub.reboot)
            await client.wait_available(WAIT)
            status = await client.wait_for_state({S.ROLLED_BACK}, WAIT)
            assert status.error is ResultCode.HEALTH_CHECK_FAILED
            assert "health command failed" in status.detail
            info = await client.get_info()
            assert (info.booted_slot, info.current_target) == ("B", "sub2-1.0.img")

    try:
        asyncio.run(scenario())
    finally:
        sub.health_flag.touch()
    assert sub.booted() == "B"


def test_trial_slot_that_never_boots_is_detected_as_fallback(fleet: Fleet) -> None:
    sub = fleet.subs[0]
    fleet.publish(sub, "sub1-2.0.img", os.urandom(100_000), release_counter=2)

    async def scenario() -> None:
        async with master(fleet) as clients:
            client = clients[sub.name]
            await client.put_metadata(fleet.bundle())
            await client.install(fleet.install_request("sub1-2.0.img"))
            await client.wait_for_state({S.READY}, WAIT)
            await client.activate()
            await asyncio.to_thread(sub.wait_reboot_request)
            sub.kill()
            sub.reboot_marker.unlink()
            # The new kernel panics on every try: the bootloader spends them, falls back.
            booted = [sub.virtual.reboot() for _ in range(4)]
            assert booted == ["A", "A", "A", "B"]
            sub.start()
            await client.wait_available(WAIT)
            status = await client.wait_for_state({S.ROLLED_BACK}, WAIT)
            assert status.error is ResultCode.BOOT_FALLBACK

    asyncio.run(scenario())


def forge_director_targets(bundle_bytes: bytes, filename: str, *, length: int) -> bytes:
    """A compromised Master edits the director's signed targets (signature kept)."""
    bundle = json.loads(bundle_bytes)
    roles = bundle["repositories"]["director"]["roles"]
    targets = json.loads(base64.b64decode(roles["targets"]))
    targets["signed"]["targets"][filename]["length"] = length
    roles["targets"] = base64.b64encode(json.dumps(targets).encode()).decode()
    return json.dumps(bundle).encode()


def test_metadata_that_fails_verification_is_rejected(fleet: Fleet) -> None:
    sub = fleet.subs[0]
    fleet.publish(sub, "sub1-3.0.img", os.urandom(50_000), release_counter=3)
    tampered = forge_director_targets(fleet.bundle(), "sub1-3.0.img", length=1)

    async def scenario() -> None:
        async with master(fleet) as clients:
            client = clients[sub.name]
            before = await client.get_status()
            with pytest.raises(RemoteError) as refused:
                await client.put_metadata(tampered)
            assert refused.value.code == ResultCode.VERIFICATION_FAILED
            assert "metadata rejected" in refused.value.detail
            # Install of something the director never assigned is refused as well.
            request = fleet.install_request("sub1-3.0.img")
            other = type(request)(
                request.target, request.url, hashlib.sha256(b"x").digest(), request.length
            )
            with pytest.raises(RemoteError) as wrong:
                await client.install(other)
            assert wrong.value.code in (ResultCode.VERIFICATION_FAILED, ResultCode.NO_METADATA)
            after = await client.get_status()
            assert after.state == before.state

    asyncio.run(scenario())


def test_sub_killed_mid_install_resumes(fleet: Fleet) -> None:
    sub = fleet.subs[1]
    image = os.urandom(1_500_000)
    fleet.publish(sub, "slow-sub2-3.0.img", image, release_counter=3)

    progress: list[int] = []

    async def scenario() -> None:
        async with master(fleet, events=True) as clients:
            client = clients[sub.name]
            client.on_progress(lambda p: progress.append(p.bytes_done))
            await client.put_metadata(fleet.bundle())
            # Cancel mid-transfer: back to IDLE, nothing switched.
            await client.install(fleet.install_request("slow-sub2-3.0.img"))
            await client.wait_for_state({S.TRANSFERRING}, WAIT)
            await client.cancel()
            status = await client.wait_for_state({S.IDLE}, WAIT)
            assert status.error is ResultCode.CANCELLED
            # Power cut mid-transfer: the journal resumes the install.
            await client.install(fleet.install_request("slow-sub2-3.0.img"))
            await client.wait_for_state({S.TRANSFERRING}, WAIT)
            await asyncio.sleep(0.5)
            sub.kill(signal.SIGKILL)
            sub.start()
            await client.wait_available(WAIT)
            status = await client.wait_for_state({S.READY, S.FAILED}, WAIT)
            assert status.state is S.READY, status
            await client.cancel()
            await client.wait_for_state({S.IDLE}, WAIT)

    asyncio.run(scenario())
    assert sub.slot_bytes("A", len(image)) == image
    assert sub.booted() == "B"
    assert len(image) in progress  # PROGRESS events, the last one at the full length


def test_malformed_payloads_do_not_hurt_the_daemon(fleet: Fleet) -> None:
    sub = fleet.subs[0]
    hostile = {
        MethodId.INSTALL: [b"", b"\x00", b"\xff\xff" + b"x" * 10, b"\x00\x01a\x00\x00"],
        MethodId.GET_MANIFEST: [b"\xff\xff\xff\xff", b"\x00\x00\x00\x00"],
        MethodId.PUT_METADATA: [b"\x00\x00\x10\x00abc", b"\x00\x00\x00\x03{}x"],
        MethodId.COMMIT: [b"extra"],
    }

    async def scenario() -> None:
        stack = SomeipyStack(str(fleet.master.socket_path))
        await stack.connect()
        try:
            binding = stack.client(sub.instance_id, fleet.master.ip, 30700)
            for method, payloads in hostile.items():
                for payload in payloads:
                    try:
                        raw = await binding.call(method, payload, 3.0)
                    except MalformedPayload:
                        continue
                    response = Response.decode(raw)
                    assert response.code is not ResultCode.OK, (method, payload)
            client = SubClient(binding, sub.name)
            status = await client.get_status()
            assert status.state is S.ROLLED_BACK
        finally:
            await stack.close()

    asyncio.run(scenario())
    assert sub.proc is not None and sub.proc.poll() is None


@contextlib.asynccontextmanager
async def sub_dbus(sub: SubNode) -> AsyncIterator[Any]:
    """The Sub's org.redstone.Sub1 interface on its private bus, as redstonectl sees it."""
    from dbus_fast.aio import MessageBus

    bus = await MessageBus(bus_address=sub.env["DBUS_SESSION_BUS_ADDRESS"]).connect()
    try:
        introspection = await bus.introspect("org.redstone.Sub", "/org/redstone/Sub")
        proxy = bus.get_proxy_object("org.redstone.Sub", "/org/redstone/Sub", introspection)
        yield proxy.get_interface("org.redstone.Sub1")
    finally:
        bus.disconnect()


def test_dbus_status_and_refused_mark_good(fleet: Fleet) -> None:
    from dbus_fast import DBusError

    async def scenario() -> None:
        async with sub_dbus(fleet.subs[0]) as iface:
            status = json.loads(await iface.call_status())
            assert status["state"] == "ROLLED_BACK"
            with pytest.raises(DBusError) as refused:
                await iface.call_mark_good()
            assert refused.value.type == "org.redstone.Sub1.Error.WRONG_STATE"

    asyncio.run(scenario())


def test_dbus_local_install_and_cancel(fleet: Fleet) -> None:
    """A technician's install over D-Bus passes the same Uptane checks as the Master's."""
    from dbus_fast import DBusError

    sub = fleet.subs[0]
    fleet.publish(sub, "sub1-4.0.img", os.urandom(70_000), release_counter=4)
    request = fleet.install_request("sub1-4.0.img")

    async def scenario() -> None:
        async with sub_dbus(sub) as iface:
            with pytest.raises(DBusError) as forged:
                await iface.call_install(request.target, request.url, "00" * 32, request.length)
            assert forged.value.type == "org.redstone.Sub1.Error.VERIFICATION_FAILED"
            await iface.call_put_metadata(fleet.bundle())
            await iface.call_install(
                request.target, request.url, request.sha256.hex(), request.length
            )
            for _ in range(200):
                if json.loads(await iface.call_status())["state"] == "READY":
                    break
                await asyncio.sleep(0.05)
            await iface.call_cancel()
            status = json.loads(await iface.call_status())
            assert (status["state"], status["error"]) == ("IDLE", "CANCELLED")

    asyncio.run(scenario())


def test_sd_notify_ready_status_and_watchdog(fleet: Fleet, tmp_path: Path) -> None:
    sub = fleet.subs[0]
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(path))
        notify.settimeout(20)
        sub.kill(signal.SIGTERM)
        sub.env.update(NOTIFY_SOCKET=str(path), WATCHDOG_USEC="200000")
        try:
            sub.start()
            messages = [notify.recv(4096).decode() for _ in range(4)]
        finally:
            del sub.env["NOTIFY_SOCKET"], sub.env["WATCHDOG_USEC"]
            sub.kill(signal.SIGTERM)
            sub.start()
    ready = next(m for m in messages if "READY=1" in m)
    assert "STATUS=IDLE" in ready
    assert "WATCHDOG=1" in messages


def test_a_sub_process_gone_from_its_node_is_unavailable_not_a_refusal(fleet: Fleet) -> None:
    """The Sub process dies right after an answer, so the Master still holds its endpoint
    (FIND_REUSE_S) and SD still holds its offer (TTL). Calls go unanswered until the
    offer expires; then the Master hears ServiceUnavailable, "ask again later": never
    a refusal, which would fail the ECU, and never a hang."""
    sub = fleet.subs[1]

    async def scenario() -> None:
        async with master(fleet) as clients:
            client = clients[sub.name]
            await client.get_status()  # the Sub's endpoint is known and fresh
            sub.kill(signal.SIGKILL)
            outcomes: list[type[Exception]] = []
            while not outcomes or outcomes[-1] is CallTimeout:
                # Until the node's daemon has seen its client go, a call may go unanswered.
                assert len(outcomes) < 5, outcomes
                try:
                    await client.get_status(timeout=2.0)
                    outcomes.append(AssertionError)
                except (CallTimeout, ServiceUnavailable, RemoteError) as exc:
                    outcomes.append(type(exc))
            assert outcomes[-1] is ServiceUnavailable, outcomes
            sub.start()
            await client.wait_available(WAIT)
            assert (await client.wait_for_state(set(SubState), WAIT)).state is S.IDLE

    asyncio.run(scenario())


def test_a_dead_sub_times_out_and_is_rediscovered_when_it_returns(fleet: Fleet) -> None:
    sub = fleet.subs[1]

    async def scenario() -> None:
        async with master(fleet) as clients:
            client = clients[sub.name]
            sub.kill(signal.SIGKILL)
            with pytest.raises((CallTimeout, ServiceUnavailable)):
                await client.get_status()  # the offer may still be cached: a deadline, no hang
            sub.start()
            await client.wait_available(WAIT)
            status = await client.wait_for_state(set(SubState), WAIT)
            assert status.state is S.IDLE

    asyncio.run(scenario())


def test_sub_exits_when_its_someipyd_dies_and_comes_back_with_it(fleet: Fleet) -> None:
    sub = fleet.subs[1]
    assert sub.proc is not None
    sub.net.stop_someipyd()
    assert sub.proc.wait(15) == 1  # systemd (Restart=on-failure) takes over from here
    sub.proc = None
    sub.net.start_someipyd()
    sub.start()

    async def scenario() -> None:
        async with master(fleet) as clients:
            # SD may still hold the old offer: poll until the restarted Sub answers.
            await clients[sub.name].wait_for_state(set(SubState), WAIT)
            info = await clients[sub.name].get_info()
            assert info.ecu_serial == sub.serial

    asyncio.run(scenario())
    assert "lost the connection to the SOME/IP daemon" in sub.log.read_text()


def test_logs_name_the_steps(fleet: Fleet) -> None:
    text = Path(fleet.subs[0].log).read_text()
    for needle in ("state TRANSFERRING", "state READY", "state COMMITTED", "rebooting"):
        assert needle in text


def test_json_logs_are_one_object_per_line(fleet: Fleet) -> None:
    lines = Path(fleet.subs[1].log).read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    states = {entry.get("state") for entry in entries}
    assert {"TRANSFERRING", "READY", "VERIFYING", "COMMITTED", "ROLLED_BACK"} <= states
