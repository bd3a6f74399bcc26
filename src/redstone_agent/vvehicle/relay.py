"""A byte relay between a Unix socket and TCP, either way round:
``python -m redstone_agent.vvehicle.relay LISTEN TARGET``.

As root the cloud listens inside its own network namespace, where the
``redstone-vehicle`` process (in the default namespace) cannot connect. Unix
sockets are not namespaced, so a relay started *in* the namespace forwards
connections made to a socket file to the server there
(``unix:api.sock tcp:10.77.0.2:8443``); another, in the ``redstone-vehicle``
process, lets a browser on this machine reach the console through that socket
(``tcp:127.0.0.1:PORT unix:api.sock``). TLS runs end to end through both: a relay
sees only ciphertext.

usage: python -m redstone_agent.vvehicle.relay unix:SOCKET|tcp:HOST:PORT unix:SOCKET|tcp:HOST:PORT
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Endpoint:
    """``unix:PATH`` or ``tcp:HOST:PORT``."""

    path: Path | None = None
    host: str = ""
    port: int = 0

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        kind, _, rest = text.partition(":")
        if kind == "unix" and rest:
            return cls(path=Path(rest))
        host, _, port = rest.rpartition(":")
        if kind == "tcp" and host and port.isdigit():
            return cls(host=host, port=int(port))
        raise ValueError(f"not unix:PATH or tcp:HOST:PORT: {text!r}")

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.path is not None:
            return await asyncio.open_unix_connection(str(self.path))
        return await asyncio.open_connection(self.host, self.port)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()


async def serve(listen: Endpoint, target: Endpoint, stop: asyncio.Event) -> None:
    """Relay every connection made to ``listen`` to ``target`` until ``stop`` is set."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await target.connect()
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        for w in (writer, up_writer):
            w.close()

    if listen.path is not None:
        listen.path.unlink(missing_ok=True)
        server = await asyncio.start_unix_server(handle, path=str(listen.path))
    else:
        server = await asyncio.start_server(handle, listen.host, listen.port)
    async with server:
        await stop.wait()
    if listen.path is not None:
        listen.path.unlink(missing_ok=True)


async def _until_signalled(listen: Endpoint, target: Endpoint) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(listen, target, stop)


def main() -> int:
    usage = __doc__.strip().splitlines()[-1]
    if len(sys.argv) != 3:
        print(usage, file=sys.stderr)
        return 2
    try:
        listen, target = Endpoint.parse(sys.argv[1]), Endpoint.parse(sys.argv[2])
    except ValueError as exc:
        print(f"relay: {exc}\n{usage}", file=sys.stderr)
        return 2
    asyncio.run(_until_signalled(listen, target))
    return 0


if __name__ == "__main__":
    sys.exit(main())
