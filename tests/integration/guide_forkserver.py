"""Run this project's console scripts from one warm Python process (a test helper).

``redstone-cloud`` spends about 1.5 s importing before it does anything, and the
operator guide's walkthrough calls it some thirty times. This server imports the
console scripts it is given once, then forks one child per call. A call comes from
a tiny client script (:func:`write_shims`, installed under the program's own name
in a directory put first on ``PATH``) that passes its argv, environment, working
directory and its stdin, stdout and stderr (as file descriptors, ``SCM_RIGHTS``);
the child takes them over and runs the script's ``main``, and the client exits with
its status. So a shell block runs as written, under real bash, with each of our
programs starting as fast as ``true``.

Run as ``python guide_forkserver.py SOCKET NAME...``; it prints ``ready`` once it
listens, and on SIGTERM stops every child it started (a ``serve`` left running).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import sys
import traceback
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from types import FrameType

HEADER = struct.Struct("!I")
STATUS = struct.Struct("!i")
MAX_REQUEST = 4 << 20
STOP_GRACE_S = 5.0

CLIENT = """\
#!{python} -IS
# Written by tests/integration/guide_forkserver.py: runs {name} in the warm server.
import json, os, socket, struct, sys
s = socket.socket(socket.AF_UNIX)
s.connect({socket!r})
body = json.dumps({{"name": {name!r}, "argv": [{name!r}, *sys.argv[1:]],
                   "cwd": os.getcwd(), "env": dict(os.environ)}}).encode()
socket.send_fds(s, [struct.pack("!I", len(body)) + body], [0, 1, 2])
got = b""
while len(got) < 4:
    chunk = s.recv(4 - len(got))
    if not chunk:
        sys.exit("{name}: the guide's fork server lost the command")
    got += chunk
sys.exit(struct.unpack("!i", got)[0])
"""


def write_shims(directory: Path, names: list[str], server_socket: Path) -> None:
    """One client script per console script *names*, calling the server at *server_socket*."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        shim = directory / name
        shim.write_text(CLIENT.format(python=sys.executable, name=name, socket=str(server_socket)))
        shim.chmod(0o755)


def _load(names: list[str]) -> dict[str, Callable[[], object]]:
    scripts = entry_points(group="console_scripts")
    return {name: scripts[name].load() for name in names}


def _receive(conn: socket.socket) -> tuple[dict[str, object], list[int]]:
    data, fds, _flags, _addr = socket.recv_fds(conn, MAX_REQUEST, 3)
    if len(data) < HEADER.size:
        raise ValueError("short request")
    (length,) = HEADER.unpack_from(data)
    body = data[HEADER.size :]
    while len(body) < length:
        chunk = conn.recv(length - len(body))
        if not chunk:
            raise ValueError("truncated request")
        body += chunk
    request = json.loads(body)
    if not isinstance(request, dict):
        raise ValueError("request is not an object")
    return request, fds


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _child(conn: socket.socket, mains: dict[str, Callable[[], object]]) -> None:
    """In the forked child: become the caller's process, run the script, report."""
    for sig in (signal.SIGTERM, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    request, fds = _receive(conn)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(str(request["cwd"]))
    env = request["env"]
    assert isinstance(env, dict)
    os.environ.clear()
    os.environ.update({str(k): str(v) for k, v in env.items()})
    argv = request["argv"]
    assert isinstance(argv, list)
    sys.argv = [str(a) for a in argv]
    try:
        code = _exit_code(mains[str(request["name"])]())
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except BaseException:
        traceback.print_exc()
        code = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):
            stream.flush()
    conn.sendall(STATUS.pack(code))


def serve(path: Path, names: list[str]) -> None:
    mains = _load(names)
    children: set[int] = set()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        signal.alarm(int(STOP_GRACE_S))
        for pid in list(children):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        os._exit(0)

    def force(_signum: int, _frame: FrameType | None) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGALRM, force)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(64)
    print("ready", flush=True)
    while True:
        conn, _ = listener.accept()
        pid = os.fork()
        if pid == 0:
            listener.close()
            try:
                _child(conn, mains)
            finally:
                os._exit(0)
        conn.close()
        children.add(pid)
        while children:
            done, _status = os.waitpid(-1, os.WNOHANG)
            if done == 0:
                break
            children.discard(done)


if __name__ == "__main__":
    serve(Path(sys.argv[1]), sys.argv[2:])
