"""The Sub engine on a real virtual A/B node (slot files, real U-Boot env tools).

Each "reboot" rebuilds the engine from its journal on the slot the virtual
bootloader chose, exactly what happens after a power cycle.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from redstone_agent.journal import Journal
from redstone_agent.retry import RetryPolicy
from redstone_agent.someip.interface import MethodId, ResultCode, SubState
from redstone_agent.someip.messages import (
    Blob,
    InstallRequest,
    MetadataLocation,
    Response,
    Status,
)
from redstone_agent.sub.engine import Engine
from redstone_agent.sub.errors import NoMetadata, SubError, VerificationFailed, WrongState
from redstone_agent.sub.service import SubService
from tests.integration.uptane.httpserver import serve
from tests.unit.sub.node_bench import Bench, make_bench

S = SubState


@pytest.fixture
def bench(tmp_path: Path) -> Bench:
    return make_bench(tmp_path)


async def until(engine: Engine, *states: SubState) -> None:
    for _ in range(500):
        if engine.state in states:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"stuck in {engine.state.name}")


async def install_ready(bench: Bench, engine: Engine, request: InstallRequest) -> None:
    await engine.recover()
    await engine.put_metadata(bench.sim.bundle().to_bytes())
    await engine.install(request)
    await until(engine, S.READY, S.FAILED)


def test_install_activate_reboot_commit(bench: Bench) -> None:
    image = os.urandom(100_000)
    request = bench.publish("v1.img", image, 1)

    async def first_boot() -> None:
        engine = bench.engine()
        await install_ready(bench, engine, request)
        assert engine.state is S.READY
        await engine.activate()
        await asyncio.sleep(0.5)  # the delayed reboot
        assert bench.reboots == 1

    async def second_boot() -> None:
        engine = bench.engine()
        await engine.recover()
        assert engine.state is S.VERIFYING
        assert "awaiting commit" in engine.status().detail
        await engine.commit()
        assert engine.state is S.COMMITTED
        assert engine.info().current_target == "v1.img"

    asyncio.run(first_boot())
    assert bench.node.reboot() == "B"
    asyncio.run(second_boot())
    assert bench.node.reboot() == "B"  # committed: stays
    with bench.node.config.B.device.open("rb") as slot:
        assert slot.read(len(image)) == image
    seqs = [status.seq for status in bench.events]
    assert seqs == sorted(seqs)


def test_unhealthy_trial_rolls_back(bench: Bench) -> None:
    request = bench.publish("v1.img", os.urandom(10_000), 1)
    bench.healthy = False

    async def first_boot() -> None:
        engine = bench.engine()
        await install_ready(bench, engine, request)
        await engine.activate()
        await asyncio.sleep(0.5)

    async def trial_boot() -> None:
        engine = bench.engine()
        await engine.recover()
        assert engine.state is S.ROLLING_BACK
        assert engine.status().error is ResultCode.HEALTH_CHECK_FAILED

    async def back_on_old() -> None:
        engine = bench.engine()
        await engine.recover()
        status = engine.status()
        assert (status.state, status.error) == (S.ROLLED_BACK, ResultCode.HEALTH_CHECK_FAILED)
        assert "app crashed" in status.detail

    asyncio.run(first_boot())
    assert bench.node.reboot() == "B"
    asyncio.run(trial_boot())
    assert bench.node.reboot() == "A"
    asyncio.run(back_on_old())


def test_power_loss_before_the_switch_returns_to_ready(bench: Bench) -> None:
    request = bench.publish("v1.img", os.urandom(10_000), 1)

    async def install() -> None:
        engine = bench.engine()
        await install_ready(bench, engine, request)

    asyncio.run(install())
    journal = Journal(bench.root / "state" / "sub.json")
    record = journal.load()
    assert record is not None
    journal.save({**record, "state": "ACTIVATING", "switched": False})

    async def restart() -> None:
        engine = bench.engine()
        await engine.recover()
        assert engine.state is S.READY

    asyncio.run(restart())


def test_corrupt_image_fails_and_leaves_the_running_slot(bench: Bench) -> None:
    request = bench.publish("v1.img", b"a" * 10_000, 1)
    Path(request.url).write_bytes(b"b" * 10_000)  # the cache serves other bytes

    async def scenario() -> None:
        engine = bench.engine()
        await install_ready(bench, engine, request)
        assert engine.state is S.FAILED
        assert engine.status().error is ResultCode.INSTALL_FAILED

    asyncio.run(scenario())
    assert bench.node.reboot() == "A"


def test_install_is_checked_against_the_verified_assignment(bench: Bench) -> None:
    request = bench.publish("v1.img", os.urandom(1000), 1)

    async def scenario() -> None:
        engine = bench.engine()
        await engine.recover()
        with pytest.raises(NoMetadata):
            await engine.install(request)
        await engine.put_metadata(bench.sim.bundle().to_bytes())
        forged = InstallRequest("v1.img", request.url, hashlib.sha256(b"evil").digest(), 1000)
        with pytest.raises(VerificationFailed, match="sha256"):
            await engine.install(forged)
        with pytest.raises(VerificationFailed, match="metadata rejected"):
            await engine.put_metadata(b'{"format": "redstone-uptane-bundle"}')
        with pytest.raises(WrongState):
            await engine.commit()
        assert engine.state is S.IDLE

    asyncio.run(scenario())


def test_cancel_in_ready_discards_the_primed_slot(bench: Bench) -> None:
    request = bench.publish("v1.img", os.urandom(10_000), 1)

    async def scenario() -> None:
        engine = bench.engine()
        await install_ready(bench, engine, request)
        await engine.cancel()
        assert engine.state is S.IDLE

    asyncio.run(scenario())
    assert bench.node.reboot() == "A"


def test_service_answers_every_request_with_a_result_code(bench: Bench) -> None:
    async def scenario() -> None:
        engine = bench.engine()
        await engine.recover()
        service = SubService(engine)
        unknown = await service.handle(0x0777, b"")
        assert Response.decode(unknown.payload).code is ResultCode.UNKNOWN_METHOD
        wrong = await service.handle(MethodId.ACTIVATE, b"")
        assert Response.decode(wrong.payload).code is ResultCode.WRONG_STATE
        bad = await service.handle(MethodId.INSTALL, b"\x00")
        assert Response.decode(bad.payload).code is ResultCode.MALFORMED
        assert bad.return_code == 0x09
        no_key = await service.handle(MethodId.GET_MANIFEST, Blob(b"n").encode())
        assert Response.decode(no_key.payload).code is ResultCode.INTERNAL
        ok = await service.handle(MethodId.GET_STATUS, b"")
        response = Response.decode(ok.payload)
        assert Status.decode(response.body).state is S.IDLE

    asyncio.run(scenario())


HOSTILE_BUNDLES = {
    "absurd nesting": b"[" * 200_000 + b"]" * 200_000,
    "lone surrogate": b'{"format": "redstone-uptane-bundle", "version": 1, "x": "\\ud800"}',
    "surrogate in a role": None,  # built from a real bundle below
    "NaN": b'{"format": "redstone-uptane-bundle", "version": NaN}',
    "huge integer": b'{"format": "redstone-uptane-bundle", "version": ' + b"9" * 5000 + b"}",
}


def _surrogate_in_a_role(bench: Bench) -> bytes:
    doc = json.loads(bench.sim.bundle().to_bytes())
    roles = doc["repositories"]["director"]["roles"]
    raw = base64.b64decode(roles["timestamp"]).replace(b'"signed":{', b'"signed":{"x":"\\udc80",')
    roles["timestamp"] = base64.b64encode(raw).decode()
    return json.dumps(doc).encode()


@pytest.mark.parametrize("form", HOSTILE_BUNDLES)
def test_hostile_metadata_is_verification_failed_in_one_line(bench: Bench, form: str) -> None:
    """PutMetadata and PutMetadataFrom answer VERIFICATION_FAILED; the Sub keeps serving."""
    bench.publish("v1.img", b"image", 1)
    data = HOSTILE_BUNDLES[form] or _surrogate_in_a_role(bench)
    (bench.root / "www").mkdir()
    (bench.root / "www" / "hostile.bundle").write_bytes(data)

    async def scenario(url: str) -> None:
        location = MetadataLocation(url, hashlib.sha256(data).digest(), len(data))
        engine = bench.engine()
        await engine.recover()
        service = SubService(engine)
        answers = [
            await service.handle(MethodId.PUT_METADATA, Blob(data[:50_000]).encode()),
            await service.handle(MethodId.PUT_METADATA_FROM, location.encode()),
        ]
        for reply in answers:
            response = Response.decode(reply.payload)
            assert response.code is ResultCode.VERIFICATION_FAILED, response.detail
            assert response.detail.startswith("metadata rejected: ")
            assert "\n" not in response.detail
        status = Response.decode((await service.handle(MethodId.GET_STATUS, b"")).payload)
        assert Status.decode(status.body).state is S.IDLE
        # and a genuine bundle is still accepted afterwards
        await engine.put_metadata(bench.sim.bundle().to_bytes())

    with serve(bench.root / "www") as server:
        asyncio.run(scenario(f"{server.url}/hostile.bundle"))


FAST_RETRY = RetryPolicy(attempts=400, base_delay=0.005, max_delay=0.01)


def _trial_on_b(bench: Bench, request: InstallRequest) -> None:
    """Install, activate and reboot into slot B (its trial boot comes next)."""

    async def first_boot() -> None:
        engine = bench.engine()
        await install_ready(bench, engine, request)
        await engine.activate()
        await asyncio.sleep(0.5)

    asyncio.run(first_boot())
    assert bench.node.reboot() == "B"
    bench.reboots = 0


async def _until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


def test_a_failing_mark_bad_is_retried_with_backoff_and_reported(bench: Bench) -> None:
    """The slot layer cannot mark the slot bad at first: the Sub retries, reports, reboots."""
    _trial_on_b(bench, bench.publish("v1.img", os.urandom(10_000), 1))
    bench.healthy = False
    lock = bench.node.config.state_dir / "slots.lock"
    lock.unlink()
    lock.mkdir()  # a broken state disk: the slot layer's lock cannot be opened

    async def trial_boot() -> None:
        engine = bench.engine(mark_bad_retry=FAST_RETRY)
        await engine.recover()  # returns: retries run in the background, the Sub serves
        assert engine.state is S.ROLLING_BACK
        await _until(lambda: "retrying in" in engine.status().detail, "a reported retry")
        assert bench.reboots == 0
        lock.rmdir()  # the disk recovers
        await _until(lambda: bench.reboots == 1, "the reboot after marking bad")
        assert engine.state is S.ROLLING_BACK
        assert "slot marked bad at attempt" in engine.status().detail
        await engine.close()

    asyncio.run(trial_boot())
    assert bench.node.reboot() == "A"

    async def back_on_old() -> None:
        engine = bench.engine()
        await engine.recover()
        assert (engine.state, engine.status().error) == (
            S.ROLLED_BACK,
            ResultCode.HEALTH_CHECK_FAILED,
        )

    asyncio.run(back_on_old())


def test_mark_bad_that_never_succeeds_ends_in_a_reboot_not_rolling_back_forever(
    bench: Bench,
) -> None:
    _trial_on_b(bench, bench.publish("v1.img", os.urandom(10_000), 1))
    bench.healthy = False
    lock = bench.node.config.state_dir / "slots.lock"
    lock.unlink()
    lock.mkdir()
    give_up = RetryPolicy(attempts=3, base_delay=0.005, max_delay=0.01)

    async def trial_boot() -> None:
        engine = bench.engine(mark_bad_retry=give_up)
        await engine.recover()
        await _until(lambda: bench.reboots == 1, "the reboot after giving up")
        assert "could not be marked bad" in engine.status().detail
        assert "try counter returns to the old slot" in engine.status().detail

    boots = []
    for _ in range(5):  # the bootloader spends B's tries, then returns to A
        asyncio.run(trial_boot())
        bench.reboots = 0
        boots.append(bench.node.reboot())
        if boots[-1] == "A":
            break
    assert boots[-1] == "A", boots

    async def back_on_old() -> None:
        engine = bench.engine()
        await engine.recover()  # the broken lock still stops acknowledging: no crash
        assert engine.state is S.ROLLED_BACK

    asyncio.run(back_on_old())


def test_sub_error_carries_its_code() -> None:
    assert SubError("x", ResultCode.TRANSFER_FAILED).code is ResultCode.TRANSFER_FAILED


def test_delta_install_rebuilds_from_the_booted_slot(bench: Bench) -> None:
    from redstone_agent.delta.make import make_delta
    from redstone_agent.someip.messages import DeltaInfo

    v1 = os.urandom(200_000)
    v2 = bytearray(v1)
    v2[1000:1100] = os.urandom(100)
    v2 += os.urandom(5000)
    (bench.root / "old.img").write_bytes(v1)
    (bench.root / "new.img").write_bytes(bytes(v2))
    delta_path = bench.root / "v1-v2.delta"
    with delta_path.open("wb") as out:
        make_delta(bench.root / "old.img", bench.root / "new.img", out, jobs=1)
    delta = delta_path.read_bytes()
    assert len(delta) < len(v2) // 4

    async def update(request: InstallRequest) -> None:
        engine = bench.engine()
        await install_ready(bench, engine, request)
        assert engine.state is S.READY, engine.status()
        await engine.activate()
        await asyncio.sleep(0.5)

    async def commit() -> None:
        engine = bench.engine()
        await engine.recover()
        await engine.commit()

    asyncio.run(update(bench.publish("v1.img", v1, 1)))
    bench.node.reboot()
    asyncio.run(commit())  # v1 committed in slot B
    full = bench.publish("v2.img", bytes(v2), 2)
    request = InstallRequest(
        full.target,
        full.url,
        full.sha256,
        full.length,
        DeltaInfo(
            str(delta_path),
            hashlib.sha256(delta).digest(),
            len(delta),
            hashlib.sha256(v1).digest(),
        ),
    )
    asyncio.run(update(request))
    assert bench.node.reboot() == "A"
    with bench.node.config.A.device.open("rb") as slot:
        assert slot.read(len(v2)) == bytes(v2)


def test_delta_for_another_source_is_refused(bench: Bench) -> None:
    from redstone_agent.delta.make import make_delta
    from redstone_agent.someip.messages import DeltaInfo

    (bench.root / "other.img").write_bytes(os.urandom(50_000))
    new = os.urandom(50_000)
    (bench.root / "new.img").write_bytes(new)
    delta_path = bench.root / "bad.delta"
    with delta_path.open("wb") as out:
        make_delta(bench.root / "other.img", bench.root / "new.img", out, jobs=1)
    full = bench.publish("v2.img", new, 1)
    request = InstallRequest(
        full.target,
        full.url,
        full.sha256,
        full.length,
        DeltaInfo(str(delta_path), bytes(32), delta_path.stat().st_size, bytes(32)),
    )

    async def scenario() -> None:
        engine = bench.engine()
        await install_ready(bench, engine, request)
        status = engine.status()
        assert (status.state, status.error) == (S.FAILED, ResultCode.INSTALL_FAILED)
        assert "source" in status.detail

    asyncio.run(scenario())
    assert bench.node.reboot() == "A"


def test_unreachable_cache_is_a_transfer_failure(bench: Bench) -> None:
    request = bench.publish("v1.img", os.urandom(1000), 1)
    Path(request.url).unlink()

    async def scenario() -> None:
        engine = bench.engine()
        await install_ready(bench, engine, request)
        status = engine.status()
        assert (status.state, status.error) == (S.FAILED, ResultCode.TRANSFER_FAILED), status

    asyncio.run(scenario())


def test_partial_verification_needs_only_the_director(bench: Bench) -> None:
    request = bench.publish("v1.img", os.urandom(5000), 1)
    partial_bundle = bench.sim.bundle().for_partial_verification().to_bytes()

    async def scenario() -> None:
        engine = bench.engine(partial=True)
        await engine.recover()
        await engine.put_metadata(partial_bundle)
        await engine.install(request)
        await until(engine, S.READY, S.FAILED)
        assert engine.state is S.READY

    asyncio.run(scenario())


def test_full_verification_refuses_a_director_only_bundle(bench: Bench) -> None:
    bench.publish("v1.img", os.urandom(5000), 1)
    partial_bundle = bench.sim.bundle().for_partial_verification().to_bytes()

    async def scenario() -> None:
        engine = bench.engine()
        await engine.recover()
        with pytest.raises(VerificationFailed, match="metadata rejected"):
            await engine.put_metadata(partial_bundle)

    asyncio.run(scenario())


def test_activation_refused_by_the_slot_layer_stays_ready(bench: Bench) -> None:
    request = bench.publish("v1.img", os.urandom(5000), 1)

    async def scenario() -> None:
        engine = bench.engine()
        await install_ready(bench, engine, request)
        # Someone reverted the bootloader behind our back: the slot is no longer primed.
        env = bench.node.bootenv
        env.save_state(env.load_state().mark_bad("B"))
        with pytest.raises(SubError, match="not installed"):
            await engine.activate()
        status = engine.status()
        assert status.state is S.READY
        assert "activation refused" in status.detail
        assert bench.reboots == 0

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "content",
    [b"garbage", b'{"version": 1, "sha256": "x", "state": {}}', b""],
)
def test_unreadable_journal_starts_failed_not_crashed(bench: Bench, content: bytes) -> None:
    bench.journal_path.write_bytes(content)

    async def scenario() -> None:
        engine = bench.engine()
        await engine.recover()
        status = engine.status()
        assert (status.state, status.error) == (S.FAILED, ResultCode.INTERNAL)
        assert "journal unreadable" in status.detail

    asyncio.run(scenario())


def test_journal_from_a_newer_version_is_not_trusted(bench: Bench) -> None:
    Journal(bench.journal_path).save({"state": "IDLE", "from_the_future": 1})

    async def scenario() -> None:
        engine = bench.engine()
        await engine.recover()
        assert engine.state is S.FAILED

    asyncio.run(scenario())


def test_master_rollback_during_the_trial_returns_to_the_old_slot(bench: Bench) -> None:
    request = bench.publish("v1.img", os.urandom(10_000), 1)

    async def first_boot() -> None:
        engine = bench.engine()
        await install_ready(bench, engine, request)
        await engine.activate()
        await asyncio.sleep(0.5)

    async def trial() -> None:
        engine = bench.engine()
        await engine.recover()
        assert engine.state is S.VERIFYING
        await engine.rollback()  # another Sub of the campaign failed
        assert engine.state is S.ROLLING_BACK
        await asyncio.sleep(0.5)
        assert bench.reboots == 2

    async def back() -> None:
        engine = bench.engine()
        await engine.recover()
        status = engine.status()
        assert (status.state, status.error) == (S.ROLLED_BACK, ResultCode.CANCELLED)
        assert engine.info().current_target == ""

    asyncio.run(first_boot())
    assert bench.node.reboot() == "B"
    asyncio.run(trial())
    assert bench.node.reboot() == "A"
    asyncio.run(back())


def test_recovered_transfer_reports_and_continues_from_the_slot_layers_offset(
    bench: Bench,
) -> None:
    """What a kill mid-download leaves: TRANSFERRING here, a durable offset in slots.json."""
    image = os.urandom(96 << 10)
    request = bench.publish("v1.img", image, 1)
    offset = 32 << 10

    async def start() -> None:
        engine = bench.engine()
        await engine.recover()
        await engine.put_metadata(bench.sim.bundle().to_bytes())
        await engine.install(request)
        await until(engine, S.READY)

    asyncio.run(start())
    sub_journal = Journal(bench.journal_path)
    record = sub_journal.load()
    assert record is not None
    sub_journal.save({**record, "state": "TRANSFERRING", "bytes_done": 0})
    slot_b = bench.node.config.B.device
    with slot_b.open("r+b") as slot:  # the slot holds the durable prefix, the rest is torn
        slot.seek(offset)
        slot.write(bytes(len(image) - offset))
    Journal(bench.node.config.state_dir / "slots.json").save(
        {"phase": "writing", "slot": "B", "from": "A", "sha256": request.sha256.hex(),
         "size": len(image), "source": request.url, "started": "x",
         "resume": {"offset": offset, "validator": None, "sha256": request.sha256.hex(),
                    "size": len(image), "device": str(slot_b)}}
    )  # fmt: skip
    bench.node.bootenv.save_state(bench.node.bootenv.load_state().mark_bad("B"))
    # Only a real resume can still succeed: the source's prefix is no longer the image's.
    Path(request.url).write_bytes(bytes(offset) + image[offset:])
    bench.events.clear()

    async def restart() -> None:
        engine = bench.engine()
        await engine.recover()
        await until(engine, S.READY, S.FAILED)
        assert engine.state is S.READY

    asyncio.run(restart())
    resumed = bench.events[0]
    assert (resumed.state, resumed.bytes_done) == (S.TRANSFERRING, offset)
    assert resumed.detail == f"resuming interrupted install at byte {offset}"
    assert slot_b.read_bytes()[: len(image)] == image
