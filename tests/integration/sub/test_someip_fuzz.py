"""Random and mutated datagrams at a running Sub never cost it its control service.

A real ``redstone-sub run`` behind the hardened someipyd in its own network
namespace; bursts of hostile datagrams, built and mutated with scapy's
SOME/IP layer (independent of our encoder), come from the Master's namespace
to the Sub's control, status and SD ports. After every burst the Master's
ordinary client must still get an answer within its normal deadline. The
seed is fixed (``SEED``): a failure replays with the same datagrams.

With someipy's own daemon the first burst already leaves the control port
answering nothing (its UDP parser carries bytes from one datagram into the
next).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import random
import socket
import struct
import threading
from collections.abc import Iterator

import pytest
from scapy.contrib.automotive.someip import SOMEIP
from scapy.packet import Raw

from redstone_agent.someip.client import open_sub_client
from redstone_agent.someip.interface import CONTROL_SERVICE_ID, MethodId
from redstone_agent.someip.someipy_binding import SomeipyStack
from tests.integration.sub.fleet import SUB_PORT, Fleet
from tests.support import require_tool

pytestmark = [pytest.mark.root, pytest.mark.slow]

SEED = 15
BURSTS = 25
BURST_SIZE = 200
SD_PORT = 30490
CLONE_NEWNET = 0x40000000


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    for tool in ("ip", "dbus-daemon", "fw_setenv", "fw_printenv"):
        require_tool(tool)
    with Fleet(tmp_path_factory.mktemp("fuzz"), sub_count=1) as vehicle:
        vehicle.subs[0].start()
        yield vehicle


def socket_in_namespace(netns: str) -> socket.socket:
    """A UDP socket that lives in *netns* (made on a helper thread that joins it)."""
    made: list[socket.socket] = []
    failed: list[BaseException] = []

    def inside() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/var/run/netns/{netns}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, os.strerror(err))
            finally:
                os.close(fd)
            made.append(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=inside)
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return made[0]


def valid_request(rng: random.Random) -> bytes:
    payload = rng.randbytes(rng.choice([0, 1, 4, 16, 200]))
    return bytes(
        SOMEIP(
            srv_id=CONTROL_SERVICE_ID,
            sub_id=rng.choice([*MethodId, 0x0000, 0x0777, 0x8001, 0xFFFF]),
            client_id=rng.randrange(0x10000),
            session_id=rng.randrange(0x10000),
            iface_ver=rng.choice([1, 1, 1, 0, 2, 0xFF]),
            msg_type=rng.choice([0x00, 0x00, 0x01, 0x02, 0x80, 0x81, 0x20, 0x42]),
        )
        / Raw(payload)
    )


def mutate(rng: random.Random, datagram: bytes) -> bytes:
    """One of the ways a datagram goes wrong on a hostile or broken network."""
    data = bytearray(datagram)
    kind = rng.randrange(9)
    if kind == 0:  # flip bytes anywhere, header included
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif kind == 1:  # truncate
        del data[rng.randrange(len(data)) :]
    elif kind == 2:  # trailing garbage
        data += rng.randbytes(rng.randint(1, 20))
    elif kind == 3:  # a length field that lies
        struct.pack_into(">I", data, 4, rng.choice([0, 7, 9, len(data), 0xFFFFFFFF]))
    elif kind == 4:  # a foreign protocol version
        data[12] = rng.choice([0, 2, 0xFF])
    elif kind == 5:  # batch two or three messages, maybe the last one cut
        data += valid_request(rng) + valid_request(rng)[: rng.choice([None, 5, 17])]
    elif kind == 6:  # a stray byte or two alone
        data = bytearray(rng.randbytes(rng.randint(0, 2)))
    elif kind == 7:  # pure noise
        data = bytearray(rng.randbytes(rng.randint(0, 300)))
    return bytes(data)  # kind 8: the valid request as it is


def test_hostile_datagrams_never_silence_the_control_service(fleet: Fleet) -> None:
    sub = fleet.subs[0]
    rng = random.Random(SEED)
    targets = [(sub.net.ip, SUB_PORT)] * 6 + [(sub.net.ip, SUB_PORT + 1), (sub.net.ip, SD_PORT)]
    attacker = socket_in_namespace(fleet.master.netns)
    attacker.setblocking(False)

    async def scenario() -> None:
        stack = SomeipyStack(str(fleet.master.socket_path))
        await stack.connect()
        try:
            client = open_sub_client(stack, sub.name, sub.instance_id, fleet.master.ip)
            await client.wait_available(30.0)
            before = await client.get_status()
            for burst in range(BURSTS):
                for _ in range(BURST_SIZE):
                    datagram = mutate(rng, valid_request(rng))
                    try:
                        attacker.sendto(datagram, rng.choice(targets))
                    except BlockingIOError:
                        await asyncio.sleep(0)
                # Our ordinary client, its ordinary 3 s deadline: CallTimeout fails the test.
                status = await client.get_status()
                assert status.state is before.state, f"burst {burst} changed the Sub's state"
                info = await client.get_info()
                assert info.ecu_serial == sub.serial
        finally:
            await stack.close()

    try:
        asyncio.run(scenario())
    finally:
        attacker.close()
    assert sub.proc is not None and sub.proc.poll() is None, f"the Sub died; see {sub.log}"
    assert sub.net.daemon is not None and sub.net.daemon.poll() is None, "someipyd died"
