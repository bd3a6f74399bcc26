"""The in-vehicle cache server: Subs download verified targets and metadata over HTTP.

Routes (GET and HEAD, nothing else)::

    /targets/<sha256>     a complete, verified target of the cache
    /metadata/<sha256>    a metadata blob (the Uptane bundle forwarded to Subs)

Anything else is 404: partial downloads (they live outside both areas),
names that are not a lowercase hex sha256 (so no ``..`` or other path
tricks can reach a file), and hashes the cache does not hold. aiohttp's
``FileResponse`` answers ``Range`` (206), unsatisfiable ranges (416) and
``If-Range`` with the ETag/Last-Modified it sends, which is what the Sub's
resumable ``transfer.HttpSource`` relies on. It sends the file with
``sendfile``, so serving costs the Master little CPU and no copies.

The server binds only the address it is given (the in-vehicle interface
from the topology), never the cloud-facing one. Access lines are logged at
debug level: the Master's log says one line per transition, not per request.
"""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from redstone_agent.master.cache import Cache
from redstone_agent.master.errors import CacheError

log = logging.getLogger(__name__)

_NAME = r"{sha256:[0-9a-f]{64}}"


class _DebugAccessLog(AbstractAccessLogger):
    """One debug line per request, and no formatting work unless debug is on."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.debug(
            "%s %s %s -> %d (%.3f s)",
            request.remote,
            request.method,
            request.path_qs,
            response.status,
            time,
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.DEBUG)


class CacheServer:
    """Serves a :class:`Cache` to the Subs on ``host:port`` (port 0: any free port)."""

    def __init__(self, cache: Cache, host: str, port: int) -> None:
        self.cache = cache
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        app = web.Application()
        app.router.add_get(f"/targets/{_NAME}", self._target)
        app.router.add_get(f"/metadata/{_NAME}", self._metadata)
        self._runner = web.AppRunner(
            app,
            access_log_class=_DebugAccessLog,
            access_log=log,
            shutdown_timeout=1.0,  # a Sub mid-download resumes by Range later
        )

    async def start(self) -> None:
        """Bind and start serving; raises CacheError when the address cannot be bound."""
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._requested_port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise CacheError(
                f"cache server cannot listen on {self.host}:{self._requested_port}: "
                f"{exc.strerror or exc}"
            ) from exc
        self._port = int(self._runner.addresses[0][1])
        log.info("cache server listening on %s", self._base())

    async def close(self) -> None:
        """Stop listening and end open connections."""
        await self._runner.cleanup()
        self._port = None

    @property
    def port(self) -> int:
        """The bound port (the ephemeral one when started with port 0)."""
        if self._port is None:
            raise CacheError("cache server is not running")
        return self._port

    def target_url(self, sha256: str) -> str:
        return f"{self._base()}/targets/{sha256}"

    def metadata_url(self, sha256: str) -> str:
        return f"{self._base()}/metadata/{sha256}"

    def _base(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def _target(self, request: web.Request) -> web.StreamResponse:
        return _file(self.cache.path(request.match_info["sha256"]))

    async def _metadata(self, request: web.Request) -> web.StreamResponse:
        return _file(self.cache.blob_path(request.match_info["sha256"]))


def _file(path: Path) -> web.StreamResponse:
    """The file if the cache holds it, else 404 (FileResponse would answer 404 too, later)."""
    if not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(path, chunk_size=256 * 1024)
