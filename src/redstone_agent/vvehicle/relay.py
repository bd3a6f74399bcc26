"""A Unix-socket → TCP relay, run on a lab node: ``python -m redstone_agent.vvehicle.relay``.

As root the cloud listens inside its own network namespace, where the
``redstone-vehicle`` process (in the default namespace) cannot connect. Unix
sockets are not namespaced, so this relay, started *in* the namespace,
forwards connections made to a socket file to ``HOST:PORT`` there. TLS runs
end to end through it: the relay sees only ciphertext.

usage: python -m redstone_agent.vvehicle.relay SOCKET HOST PORT
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path


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


async def relay(socket_path: Path, host: str, port: int) -> None:
    """Serve until SIGTERM/SIGINT."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        for w in (writer, up_writer):
            w.close()

    socket_path.unlink(missing_ok=True)
    server = await asyncio.start_unix_server(handle, path=str(socket_path))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    socket_path.unlink(missing_ok=True)


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    asyncio.run(relay(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
