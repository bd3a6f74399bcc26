"""A real hardened someipyd on loopback and a raw UDP peer that speaks SOME/IP via scapy.

No namespaces, no root: the daemon binds 127.0.0.1 with a private SD port so
parallel runs never hear each other. Requests are built and answers parsed
with scapy's SOME/IP layer, independently of our own framing code.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from scapy.contrib.automotive.someip import SOMEIP
from scapy.packet import Raw

from redstone_agent.someip.binding import MethodHandler, Reply
from redstone_agent.someip.interface import CONTROL_SERVICE_ID, INTERFACE_MAJOR, MethodId
from redstone_agent.someip.someipy_binding import SomeipyStack

LOOPBACK = "127.0.0.1"
SD_ADDRESS = "224.224.224.245"
INSTANCE = 7
ECHO = MethodId.GET_INFO
"""The test handler echoes this method's payload."""
REFUSE = MethodId.INSTALL
"""... and answers this one as E_MALFORMED_MESSAGE with the envelope."""


def free_udp_port(address: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((address, 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Daemon:
    socket_path: Path
    sd_port: int
    log: Path


@contextmanager
def hardened_someipyd(workdir: Path) -> Iterator[Daemon]:
    """``python -m redstone_agent.someip.someipyd`` on 127.0.0.1, stopped on exit."""
    daemon = Daemon(workdir / "someipyd.sock", free_udp_port(), workdir / "someipyd.log")
    config = workdir / "someipyd.json"
    config.write_text(
        json.dumps(
            {
                "socket_path": str(daemon.socket_path),
                "interface": LOOPBACK,
                "sd_address": SD_ADDRESS,
                "sd_port": daemon.sd_port,
                "log_level": "INFO",
            }
        )
    )
    with daemon.log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "redstone_agent.someip.someipyd", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 15
        while not daemon.socket_path.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"someipyd did not start: see {daemon.log}")
            time.sleep(0.02)
        yield daemon
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def request(
    method: int,
    payload: bytes = b"",
    *,
    session: int = 1,
    service: int = CONTROL_SERVICE_ID,
    interface_version: int = INTERFACE_MAJOR,
    protocol_version: int = 1,
    message_type: int = SOMEIP.TYPE_REQUEST,
) -> bytes:
    """One SOME/IP message, encoded by scapy."""
    packet = SOMEIP(
        srv_id=service,
        sub_id=method,
        client_id=0x4242,
        session_id=session,
        proto_ver=protocol_version,
        iface_ver=interface_version,
        msg_type=message_type,
    ) / Raw(payload)
    return bytes(packet)


def body(message: SOMEIP) -> bytes:
    """The payload of a parsed message (scapy keeps it as a list of layers)."""
    return bytes(message)[16:]


class RawPeer:
    """A bare UDP socket on the event loop: send bytes, receive whole SOME/IP answers."""

    def __init__(self, target: tuple[str, int], address: str = LOOPBACK) -> None:
        self.target = target
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, 0))
        self.sock.setblocking(False)

    def send(self, datagram: bytes) -> None:
        self.sock.sendto(datagram, self.target)

    async def answer(self, timeout: float = 3.0) -> SOMEIP:
        """The next datagram, as scapy parses it (``CallTimeout``-style deadline)."""
        loop = asyncio.get_running_loop()
        data = await asyncio.wait_for(loop.sock_recv(self.sock, 65536), timeout)
        return SOMEIP(data)

    async def answers(self, count: int, timeout: float = 3.0) -> list[SOMEIP]:
        """*count* SOME/IP messages, whether they came batched or one per datagram."""
        loop = asyncio.get_running_loop()
        found: list[SOMEIP] = []
        while len(found) < count:
            data = await asyncio.wait_for(loop.sock_recv(self.sock, 65536), timeout)
            while data:
                message = SOMEIP(data)
                found.append(message)
                data = data[8 + message.len :]
        return found

    async def call(self, method: int, payload: bytes, session: int) -> SOMEIP:
        """A well-formed request and its answer (skipping stale answers of other sessions)."""
        self.send(request(method, payload, session=session))
        while True:
            answer = await self.answer()
            if answer.session_id == session:
                return answer

    def close(self) -> None:
        self.sock.close()


async def echo_handler(method_id: int, payload: bytes) -> Reply:
    from redstone_agent.someip.binding import RETURN_MALFORMED
    from redstone_agent.someip.interface import ResultCode
    from redstone_agent.someip.messages import Response

    if method_id == REFUSE:
        return Reply(Response(ResultCode.MALFORMED, "refused").encode(), RETURN_MALFORMED)
    return Reply(payload)


@asynccontextmanager
async def offered(
    daemon: Daemon, handler: MethodHandler = echo_handler
) -> AsyncIterator[tuple[str, int]]:
    """The control service offered through *daemon*; yields its endpoint once it answers."""
    stack = SomeipyStack(str(daemon.socket_path))
    await stack.connect()
    port = free_udp_port()
    server = stack.server(INSTANCE, LOOPBACK, port)
    await server.offer(handler)
    peer = RawPeer((LOOPBACK, port))
    try:
        deadline = time.monotonic() + 10
        while True:  # someipyd opens the endpoint after the offer message: wait for it
            peer.send(request(ECHO, b"ready?", session=0xFFFF))
            try:
                await peer.answer(timeout=0.2)
                break
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise
        yield (LOOPBACK, port)
    finally:
        peer.close()
        await server.stop()
        await stack.close()
