"""A UDS ECU behind a real ``redstone-sub``, driven by the Master's ProxiedPort over SOME/IP.

One Sub in its own network namespace with ``[[sub.uds-ecus]]``; the ECU is
``redstone-ecusim`` (DoIP) on the Master node, reached by the Sub across the
lab's bridge; the test process is the Master (its SOME/IP through the Master
node's someipyd) and the fleet's HTTP server its cache. Scenarios run in order
and each leaves the ECU settled.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from redstone_agent.master.ecu_proxied import ProxiedPort
from redstone_agent.master.errors import EcuFailed
from redstone_agent.master.ports import EcuJob, EcuStanding, Image
from redstone_agent.master.topology import EcuKind, EcuSpec, TimeoutSettings
from redstone_agent.someip.client import SubClient, open_sub_client
from redstone_agent.someip.errors import RemoteError
from redstone_agent.someip.interface import INTERFACE_MINOR, ProxiedState, ResultCode, SubState
from redstone_agent.someip.messages import ProxiedStatus
from redstone_agent.someip.someipy_binding import SomeipyStack
from redstone_agent.uptane.keys import generate_signer, load_signer, save_signer
from redstone_agent.uptane.manifests import new_nonce, verify_ecu_manifest
from redstone_agent.vvehicle.journals import peek_journal
from tests.integration.sub.fleet import CACHE_PORT, Fleet, SubNode
from tests.support import require_tool

pytestmark = [pytest.mark.root, pytest.mark.slow]

SERIAL = "ECU-SEAT-0001"
HW = "seat-hw"
DOIP_PORT = 13400
WAIT = 30.0
TIMEOUTS = TimeoutSettings(install_s=120.0, activate_s=60.0, rollback_s=120.0)
P = ProxiedState


def seat_image(version: str, size: int = 24_000) -> bytes:
    """The simulator reports the first 16 bytes of the image as its version DID."""
    body = bytes((i * 11 + len(version) * 5) & 0xFF for i in range(size - 16))
    return version.encode().ljust(16, b"\0") + body


def _ecu_files(fleet: Fleet) -> tuple[Path, Path, Path]:
    """Simulator file, tester file (the Sub's uds-config) and the ECU's manifest key."""
    workdir = fleet.master.workdir
    address = fleet.master.ip
    link = (
        "[doip]\n"
        f'host = "{address}"\n'
        f"tcp_port = {DOIP_PORT}\n"
        f"udp_port = {DOIP_PORT}\n"
        "logical_address = 0x0010\n"
    )
    region = '[[{}]]\nname = "app"\naddress = 0x10000\nsize = 0x20000\n'
    sim = workdir / "sim-seat.toml"
    sim.write_text(
        'name = "seat"\n'
        "erase_time = 1.0\n"  # a window in which the test can pull the Sub's power
        + link
        + '[memory]\ninitial_version = "1.0.0"\n'
        + region.format("memory.regions")
    )
    tester = workdir / "seat.toml"
    tester.write_text(
        'name = "seat"\ntransport = "doip"\n'
        + link
        + '[security]\nparams = { mask = "5a3c9ee1" }\n'
        + "[timing]\np2 = 2.0\n"
        + "[programming]\nreset_settle = 0.3\n"
        + region.format("regions")
    )
    key = workdir / "seat.pem"
    save_signer(generate_signer(), key)
    return sim, tester, key


def _start_simulator(fleet: Fleet, config: Path) -> None:
    log = fleet.master.workdir / "ecusim.log"
    exe = str(Path(sys.executable).with_name("redstone-ecusim"))
    proc = fleet.master.spawn([exe, str(config), "--json"], log=log)
    deadline = time.monotonic() + WAIT
    while '"name": "seat"' not in log.read_text(errors="replace"):
        assert proc.poll() is None, f"redstone-ecusim exited: {log.read_text()}"
        assert time.monotonic() < deadline, f"redstone-ecusim not ready: {log.read_text()}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    for tool in ("ip", "dbus-daemon", "fw_setenv", "fw_printenv"):
        require_tool(tool)
    with Fleet(tmp_path_factory.mktemp("proxy"), sub_count=1) as vehicle:
        sim, tester, key = _ecu_files(vehicle)
        _start_simulator(vehicle, sim)
        sub = vehicle.subs[0]
        with sub.config.open("a") as config:
            config.write(
                "[[sub.uds-ecus]]\n"
                f'serial = "{SERIAL}"\n'
                f'hardware-id = "{HW}"\n'
                f'uds-config = "{tester}"\n'
                'installed-target = "seat-1.0.0.bin"\n'
                f'ecu-key = "{key}"\n'
            )
        sub.start()
        yield vehicle


@pytest.fixture(scope="module")
def sub(fleet: Fleet) -> SubNode:
    return fleet.subs[0]


@contextlib.asynccontextmanager
async def master(fleet: Fleet, sub: SubNode) -> AsyncIterator[SubClient]:
    stack = SomeipyStack(str(fleet.master.socket_path))
    await stack.connect()
    try:
        client = open_sub_client(stack, sub.name, sub.instance_id, fleet.master.ip)
        await client.wait_available(WAIT)
        await client.wait_subscribed(WAIT)
        yield client
    finally:
        await stack.close()


def port(client: SubClient, sub: SubNode, serial: str = SERIAL) -> ProxiedPort:
    spec = EcuSpec(serial, EcuKind.UDS_DOIP, HW, behind=sub.serial)
    return ProxiedPort(spec, client, TIMEOUTS)


def release(fleet: Fleet, version: str, counter: int) -> Image:
    """Sign a seat image into the image repository and put it in the Master's cache."""
    data = seat_image(version)
    name = f"seat-{version}.bin"
    (fleet.cache_dir / name).write_bytes(data)
    fleet.sim.add_image(name, data, [HW], counter, extra={"version": version})
    return Image(
        name,
        hashlib.sha256(data).hexdigest(),
        len(data),
        version,
        fleet.cache_dir / name,
        f"http://{fleet.master.ip}:{CACHE_PORT}/{name}",
        counter,
    )


def job(fleet: Fleet, new: Image, previous: Image | None) -> EcuJob:
    """The director assigns ``new`` to the seat ECU; the bundle goes to the cache."""
    fleet.sim.assign(SERIAL, HW, new.target)
    bundle = fleet.bundle()
    name = f"bundle-{hashlib.sha256(bundle).hexdigest()[:16]}.json"
    (fleet.cache_dir / name).write_bytes(bundle)
    url = f"http://{fleet.master.ip}:{CACHE_PORT}/{name}"
    return EcuJob(SERIAL, new=new, previous=previous, bundle=bundle, bundle_url=url)


def test_the_1_0_calls_are_unchanged_and_info_lists_the_ecu(fleet: Fleet, sub: SubNode) -> None:
    async def scenario() -> None:
        async with master(fleet, sub) as client:
            status = await client.get_status()  # 1.0 methods, 1.0 payloads
            assert status.state is SubState.IDLE
            envelope = json.loads(await client.get_manifest(new_nonce().encode()))
            assert envelope["signed"]["ecu_serial"] == sub.serial
            info = await client.get_info()
            assert (info.ecu_serial, info.interface_minor, info.proxied) == (
                sub.serial,
                INTERFACE_MINOR,
                (SERIAL,),
            )

    asyncio.run(scenario())


def test_install_and_rollback_through_the_sub(fleet: Fleet, sub: SubNode) -> None:
    old, new = release(fleet, "1.0.0", 1), release(fleet, "2.0.0", 2)
    the_job = job(fleet, new, old)
    events: list[ProxiedStatus] = []
    progress: list[int] = []
    key = load_signer(fleet.master.workdir / "seat.pem").public_key

    async def scenario() -> None:
        async with master(fleet, sub) as client:
            client.on_proxied(events.append)
            seat = port(client, sub)
            assert await seat.standing(the_job) is EcuStanding.OLD
            nonce = new_nonce()
            factory = verify_ecu_manifest(
                await seat.manifest(nonce), key, expected_serial=SERIAL, expected_nonce=nonce
            )
            assert (factory.filename, factory.report["via"]) == ("seat-1.0.0.bin", sub.serial)
            result = await seat.install(the_job, lambda done, _total: progress.append(done))
            assert result.bytes_sent == new.length
            assert await seat.standing(the_job) is EcuStanding.NEW
            manifest = verify_ecu_manifest(await seat.manifest(nonce), key, expected_nonce=nonce)
            assert (manifest.filename, manifest.sha256, manifest.release_counter) == (
                new.target,
                new.sha256,
                2,
            )
            again = await seat.install(the_job, lambda _done, _total: None)
            assert again.detail == "already runs 2.0.0"
            back = await seat.rollback(the_job)
            assert back.detail == "runs 1.0.0"
            assert await seat.standing(the_job) is EcuStanding.OLD

    asyncio.run(scenario())
    states = {e.state for e in events if e.serial == SERIAL}
    assert {P.DOWNLOADING, P.FLASHING, P.INSTALLED, P.ROLLING_BACK, P.ROLLED_BACK} <= states
    assert progress, "no flash progress reached the Master"


def test_a_serial_the_sub_does_not_flash_is_one_line(fleet: Fleet, sub: SubNode) -> None:
    async def scenario() -> None:
        async with master(fleet, sub) as client:
            with pytest.raises(RemoteError) as refused:
                await client.get_proxied_status("ECU-NOPE-0001")
            assert refused.value.code == ResultCode.UNKNOWN_ECU
            assert refused.value.detail == (
                f"Sub {sub.serial} does not flash an ECU 'ECU-NOPE-0001' (it flashes: {SERIAL})"
            )
            with pytest.raises(EcuFailed) as caught:
                await port(client, sub, "ECU-NOPE-0001").manifest(new_nonce())
            assert str(caught.value) == (
                f"ECU-NOPE-0001: Sub {sub.serial} does not flash this ECU "
                f"(its [[sub.uds-ecus]]: {SERIAL}): topology refused"
            )

    asyncio.run(scenario())


def test_an_image_the_director_did_not_assign_never_reaches_the_ecu(
    fleet: Fleet, sub: SubNode
) -> None:
    old, new = release(fleet, "1.0.0", 1), release(fleet, "2.0.0", 2)
    rogue = release(fleet, "6.6.6", 6)
    assigned = job(fleet, new, old)
    forged = EcuJob(
        SERIAL, new=rogue, previous=old, bundle=assigned.bundle, bundle_url=assigned.bundle_url
    )

    async def scenario() -> None:
        async with master(fleet, sub) as client:
            seat = port(client, sub)
            with pytest.raises(EcuFailed, match=r"VERIFICATION_FAILED: .*is not the assigned"):
                await seat.install(forged, lambda _done, _total: None)
            assert await seat.standing(assigned) is EcuStanding.OLD

    asyncio.run(scenario())


def test_a_sub_killed_mid_flash_converges_with_the_master(fleet: Fleet, sub: SubNode) -> None:
    """Power cut of the Sub while it flashes: on start it flashes again; the Master's
    port rides through the Sub's absence and sees the ECU on its new image."""
    old, new = release(fleet, "1.0.0", 1), release(fleet, "3.0.0", 3)
    the_job = job(fleet, new, old)
    journal = sub.workdir / "sub-state" / "proxied" / SERIAL / "ecu.json"

    def flashing() -> bool:
        return str(peek_journal(journal).get("state", "")) == "FLASHING"

    async def scenario() -> None:
        async with master(fleet, sub) as client:
            seat = port(client, sub)
            install = asyncio.create_task(seat.install(the_job, lambda _d, _t: None))
            deadline = time.monotonic() + WAIT
            while not flashing():
                assert not install.done(), install
                assert time.monotonic() < deadline, peek_journal(journal)
                await asyncio.sleep(0.02)
            await asyncio.to_thread(sub.kill)  # SIGKILL: a power cut mid-flash
            await asyncio.to_thread(sub.start)
            result = await install
            assert "3.0.0" in result.detail, result
            assert await seat.standing(the_job) is EcuStanding.NEW

    asyncio.run(scenario())
    assert journal.exists()
