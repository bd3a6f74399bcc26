"""A Sub's flashing of a UDS ECU behind it (sub/proxied.py) against the real ECU simulator.

DoIP on loopback, images and the Uptane bundle as local files (the transfer
layer reads paths as it reads the Master's cache URLs), real Uptane metadata
from the simulator, real journals. No SOME/IP here: that is
``test_proxy_someip.py``; this module drives :class:`ProxiedEcu` directly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from redstone_agent.ecusim.config import Faults, SimConfig, SimDoIp, SimMemory
from redstone_agent.ecusim.runner import BackgroundSimulator
from redstone_agent.someip.interface import ProxiedState, ResultCode
from redstone_agent.someip.messages import (
    MetadataLocation,
    ProxiedImage,
    ProxiedStatus,
    ProxyInstallRequest,
)
from redstone_agent.sub.config import ProxiedEcuConfig, SomeIpConfig, SubConfig, TrustConfig
from redstone_agent.sub.errors import SubError, WrongState
from redstone_agent.sub.proxied import ProxiedEcu, Proxy
from redstone_agent.uds.config import Region, Timing
from redstone_agent.uptane.keys import generate_signer, save_signer
from redstone_agent.uptane.manifests import verify_ecu_manifest
from redstone_agent.uptane.simulator import UptaneSimulator

P = ProxiedState
SERIAL = "BCM-0001"
HW = "bcm-hw"
REGION = Region("app", 0x0001_0000, 0x0002_0000)
TIMING = Timing(p2=0.5, p2_star=2.0, max_pending=5.0, reconnect_delay=0.1, busy_delay=0.01)
WAIT = 60.0


def image(version: str, size: int = 24_000) -> bytes:
    """First 16 bytes are the version: what the simulator reports as its version DID."""
    body = bytes((i * 13 + len(version) * 7) & 0xFF for i in range(size - 16))
    return version.encode().ljust(16, b"\0") + body


@dataclasses.dataclass
class Bench:
    """A simulator, a Sub's view of it, the metadata and the files in the 'cache'."""

    tmp: Path
    sim: UptaneSimulator
    trust: TrustConfig
    key: Path
    background: BackgroundSimulator
    published: list[ProxiedStatus]
    ecus: list[ProxiedEcu] = dataclasses.field(default_factory=list)

    def publish(self, version: str, counter: int, data: bytes | None = None) -> ProxiedImage:
        """Sign an image into the image repository; its bytes into the cache."""
        data = image(version) if data is None else data
        name = f"bcm-{version}.bin"
        self.sim.add_image(name, image(version), [HW], counter, extra={"version": version})
        path = self.tmp / "cache" / name
        path.write_bytes(data)
        return ProxiedImage(
            name, str(path), hashlib.sha256(image(version)).digest(), len(data), version, counter
        )

    def request(self, new: ProxiedImage, previous: ProxiedImage | None) -> ProxyInstallRequest:
        """The director assigns ``new``; the bundle goes to the cache; the ProxyInstall."""
        self.sim.assign(SERIAL, HW, new.target)
        bundle = self.sim.bundle().to_bytes()
        path = self.tmp / "cache" / f"bundle-{hashlib.sha256(bundle).hexdigest()[:12]}"
        path.write_bytes(bundle)
        location = MetadataLocation(str(path), hashlib.sha256(bundle).digest(), len(bundle))
        return ProxyInstallRequest(SERIAL, location, new, previous)

    def ecu(self, **changes: Any) -> ProxiedEcu:
        """A fresh ProxiedEcu on the same state directory (a Sub start)."""
        tester = self.background.tester_config(timing=TIMING)
        tester = dataclasses.replace(
            tester, programming=dataclasses.replace(tester.programming, reset_settle=0.05)
        )
        config = ProxiedEcuConfig(SERIAL, HW, self.tmp / "unused.toml", "bcm-1.0.0.bin")
        ecu = ProxiedEcu(
            config,
            dataclasses.replace(tester, **changes),
            self.trust,
            self.tmp / "state",
            sub_serial="SUB-0001",
            key=self.key,
            publish=self.published.append,
        )
        self.ecus.append(ecu)
        return ecu

    def version(self) -> str:
        """What the ECU runs, read over UDS by a fresh tester."""
        status: ProxiedStatus = run(self.ecu().refreshed_status())
        return status.version


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def settle(ecu: ProxiedEcu) -> ProxiedStatus:
    assert await ecu.wait_idle(WAIT), f"{SERIAL} still busy: {ecu.status()}"
    return ecu.status()


Start = Callable[..., Bench]


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Start]:
    running: list[BackgroundSimulator] = []

    def start(faults: Faults | None = None, *, dual_bank: bool = False) -> Bench:
        (tmp_path / "cache").mkdir(exist_ok=True)
        sim = UptaneSimulator.create()
        roots = sim.trusted_roots()
        (tmp_path / "director.root.json").write_bytes(roots.director)
        assert roots.image is not None
        (tmp_path / "image.root.json").write_bytes(roots.image)
        key = tmp_path / "bcm.pem"
        save_signer(generate_signer(), key)
        background = BackgroundSimulator(
            SimConfig(
                "bcm",
                doip=SimDoIp(tcp_port=0, udp_port=0, max_block_length=0x2002),
                memory=SimMemory(regions=[REGION], dual_bank=dual_bank, initial_version="1.0.0"),
                faults=faults or Faults(),
                erase_time=0.02,
                reset_time=0.02,
            )
        ).__enter__()
        running.append(background)
        trust = TrustConfig(tmp_path / "director.root.json", tmp_path / "image.root.json")
        return Bench(tmp_path, sim, trust, key, background, [])

    yield start
    for background in running:
        background.close()


def test_install_flashes_the_assigned_image_then_rollback_restores_the_previous(
    bench: Start,
) -> None:
    b = bench()
    old, new = b.publish("1.0.0", 1), b.publish("2.0.0", 2)
    ecu = b.ecu()

    async def scenario() -> None:
        await ecu.recover()
        assert (await ecu.refreshed_status()).version == "1.0.0"
        await ecu.install(b.request(new, old))
        with pytest.raises(WrongState, match="ProxyInstall for BCM-0001 not allowed in"):
            await ecu.install(b.request(new, old))
        installed = await settle(ecu)
        assert (installed.state, installed.version, installed.running) == (
            P.INSTALLED,
            "2.0.0",
            "bcm-2.0.0.bin",
        ), installed
        envelope = json.loads(await ecu.manifest("abcd"))
        manifest = verify_ecu_manifest(
            envelope, _public(b.key), expected_serial=SERIAL, expected_nonce="abcd"
        )
        assert (manifest.filename, manifest.sha256, manifest.release_counter) == (
            "bcm-2.0.0.bin",
            hashlib.sha256(image("2.0.0")).hexdigest(),
            2,
        )
        assert manifest.report["via"] == "SUB-0001"
        await ecu.rollback()
        back = await settle(ecu)
        assert (back.state, back.version, back.running) == (
            P.ROLLED_BACK,
            "1.0.0",
            "bcm-1.0.0.bin",
        ), back
        await ecu.rollback()  # again: nothing to do, it runs the goal
        assert (await settle(ecu)).detail == "runs 1.0.0"

    run(scenario())
    states = [s.state for s in b.published]
    assert P.DOWNLOADING in states and P.FLASHING in states and P.ROLLING_BACK in states
    assert all(a.seq <= z.seq for a, z in zip(b.published, b.published[1:], strict=False))
    assert b.version() == "1.0.0"


def _public(key: Path) -> Any:
    from redstone_agent.uptane.keys import load_signer

    return load_signer(key).public_key


def test_bytes_other_than_the_signed_image_never_reach_the_ecu(bench: Start) -> None:
    b = bench()
    old = b.publish("1.0.0", 1)
    new = b.publish("2.0.0", 2, data=image("6.6.6"))  # the cache serves other bytes
    ecu = b.ecu()

    async def scenario() -> ProxiedStatus:
        await ecu.recover()
        await ecu.install(b.request(new, old))
        failed = await settle(ecu)
        await ecu.rollback()  # the install never reached the ECU: nothing to undo
        back = await settle(ecu)
        assert back.state is P.ROLLED_BACK and "untouched" in back.detail, back
        return failed

    failed = run(scenario())
    assert (failed.state, failed.error) == (P.FAILED, ResultCode.VERIFICATION_FAILED), failed
    assert "is not the verified image" in failed.detail and "\n" not in failed.detail
    assert b.version() == "1.0.0"


def test_an_image_the_director_did_not_assign_is_refused(bench: Start) -> None:
    b = bench()
    old, new, other = b.publish("1.0.0", 1), b.publish("2.0.0", 2), b.publish("3.0.0", 3)
    ecu = b.ecu()
    request = dataclasses.replace(b.request(new, old), image=other)  # director says 2.0.0

    async def scenario() -> ProxiedStatus:
        await ecu.recover()
        await ecu.install(request)
        return await settle(ecu)

    failed = run(scenario())
    assert (failed.state, failed.error) == (P.FAILED, ResultCode.VERIFICATION_FAILED)
    assert "is not the assigned 'bcm-2.0.0.bin'" in failed.detail, failed
    assert b.version() == "1.0.0"


def test_an_image_that_fails_to_start_is_replaced_by_the_previous_one(bench: Start) -> None:
    b = bench(Faults(boot_failure=1))
    old, new = b.publish("1.0.0", 1), b.publish("2.0.0", 2)
    ecu = b.ecu()

    async def scenario() -> ProxiedStatus:
        await ecu.recover()
        await ecu.install(b.request(new, old))
        return await settle(ecu)

    failed = run(scenario())
    assert (failed.state, failed.error, failed.version) == (
        P.FAILED,
        ResultCode.INSTALL_FAILED,
        "1.0.0",
    ), failed
    assert "previous image was flashed back" in failed.detail, failed


def test_a_sub_restarted_mid_flash_flashes_again_and_converges(bench: Start) -> None:
    """The journal says Flashing (the Sub died during the flash): on start the install
    runs again from the metadata check and ends Installed."""
    b = bench()
    old, new = b.publish("1.0.0", 1), b.publish("2.0.0", 2)
    first = b.ecu()

    async def crash() -> None:
        await first.recover()
        await first.install(b.request(new, old))
        deadline = asyncio.get_running_loop().time() + WAIT
        while first.state is not P.FLASHING:  # journaled before the flash starts
            assert asyncio.get_running_loop().time() < deadline, first.status()
            await asyncio.sleep(0.001)
        await first.close()  # the power goes: the flash stops between two requests

    run(crash())
    journal = json.loads((b.tmp / "state" / "proxied" / SERIAL / "ecu.json").read_text())
    assert journal["state"]["state"] == "FLASHING", journal
    second = b.ecu()

    async def restart() -> ProxiedStatus:
        await second.recover()
        return await settle(second)

    installed = run(restart())
    assert (installed.state, installed.version) == (P.INSTALLED, "2.0.0"), installed
    assert b.version() == "2.0.0"


def test_a_dual_bank_ecu_without_a_previous_image_switches_back(bench: Start) -> None:
    b = bench(dual_bank=True)
    new = b.publish("2.0.0", 2)
    b.publish("1.0.0", 1)
    ecu = b.ecu(programming=_dual(b))

    async def scenario() -> tuple[ProxiedStatus, ProxiedStatus]:
        await ecu.recover()
        await ecu.install(b.request(new, None))
        installed = await settle(ecu)
        await ecu.rollback()
        return installed, await settle(ecu)

    installed, back = run(scenario())
    assert installed.state is P.INSTALLED, installed
    assert (back.state, back.version) == (P.ROLLED_BACK, "1.0.0"), back
    assert "other bank" in back.detail


def _dual(b: Bench) -> Any:
    programming = b.background.tester_config(timing=TIMING).programming
    return dataclasses.replace(programming, dual_bank=True, reset_settle=0.05)


def test_a_serial_the_sub_does_not_flash_is_one_line(tmp_path: Path) -> None:
    config = SubConfig(
        "SUB-0001",
        "sub-hw",
        SomeIpConfig(1, "127.0.0.1"),
        TrustConfig(tmp_path / "director.root.json"),
        state_dir=tmp_path,
    )
    proxy = Proxy.build(config, lambda _status: None)
    with pytest.raises(
        SubError, match=r"^Sub SUB-0001 does not flash an ECU 'X' \(it flashes: none\)$"
    ) as err:
        proxy.ecu("X")
    assert err.value.code is ResultCode.UNKNOWN_ECU
