"""The Master's image cache for tests: static files with Range, optionally throttled.

Files named ``slow-*`` are sent at ~1 MiB/s so a test can kill a Sub in the
middle of a download. Each request is logged to stderr as
``GET /path STATUS range=<Range header or ->``, which resume tests read.
Run: ``python cache_server.py DIR ADDRESS PORT``.
"""

from __future__ import annotations

import re
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SLOW_RATE = 1 << 20
CHUNK = 64 << 10


class Handler(BaseHTTPRequestHandler):
    root: Path

    def do_GET(self) -> None:
        path = self.root / self.path.lstrip("/").split("?")[0]
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if match:
            start = int(match.group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{path.stat().st_mtime_ns}"')
        self.end_headers()
        slow = path.name.startswith("slow-")
        for offset in range(start, len(data), CHUNK):
            self.wfile.write(data[offset : offset + CHUNK])
            if slow:
                time.sleep(CHUNK / SLOW_RATE)

    def log_message(self, format: str, *args: object) -> None:
        status = args[1] if len(args) > 1 else ""
        sys.stderr.write(
            f"{self.command} {self.path} {status} range={self.headers.get('Range', '-')}\n"
        )
        sys.stderr.flush()


def main() -> None:
    Handler.root = Path(sys.argv[1])
    server = ThreadingHTTPServer((sys.argv[2], int(sys.argv[3])), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
