#!/usr/bin/python3
"""TEST ONLY (never in a product image): run shell commands the host sends on /dev/ttyS1
(``REDSTONE_TEST_PORT`` names another port: /dev/hvc0 on the aarch64 ``virt`` machine).

Protocol (tools/qemu/README.md, "Control channel"): the host writes one JSON
object per line, ``{"id": N, "cmd": "shell text", "timeout": seconds}``; this
service answers with one line ``RSCTL {"id": N, "rc": RC, "out": BASE64}``
(stdout and stderr together; rc -1 and a note when the command timed out).
Anything else on the line (noise, echo before the port went raw) is ignored.
Commands run one after another, as root, with /bin/sh -c.
"""

import base64
import json
import os
import subprocess
import tty

PORT = os.environ.get("REDSTONE_TEST_PORT", "/dev/ttyS1")
PREFIX = b"RSCTL "


def answer(port: int, reply: dict[str, object]) -> None:
    data = PREFIX + json.dumps(reply).encode() + b"\n"
    while data:
        data = data[os.write(port, data) :]


def main() -> None:
    port = os.open(PORT, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(port)
    answer(port, {"id": 0, "rc": 0, "out": base64.b64encode(b"ready").decode()})
    pending = b""
    while True:
        chunk = os.read(port, 4096)
        if not chunk:
            continue
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            start = line.find(b"{")
            try:
                request = json.loads(line[start:]) if start >= 0 else None
            except ValueError:
                request = None
            if not isinstance(request, dict) or "cmd" not in request:
                continue
            try:
                done = subprocess.run(
                    ["/bin/sh", "-c", request["cmd"]],
                    check=False,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    timeout=float(request.get("timeout", 60)),
                )
                rc, out = done.returncode, done.stdout
            except subprocess.TimeoutExpired as exc:
                rc, out = -1, (exc.stdout or b"") + b"\n(console: command timed out)"
            reply = {"id": request.get("id"), "rc": rc, "out": base64.b64encode(out).decode()}
            answer(port, reply)


if __name__ == "__main__":
    main()
