"""One way to answer with a package's bytes, for the device and the admin download routes:
ETag (the object's SHA-256), ``Range``/``If-Range``, ``If-None-Match``, or a redirect to a
signed object-store URL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import Response
from fastapi.responses import RedirectResponse, StreamingResponse

from redstone_cloud import ranges
from redstone_cloud.api import schemas
from redstone_cloud.backend import Backend
from redstone_cloud.db.models import Package
from redstone_cloud.services import device

_BYTES = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}

RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "the whole object", "content": _BYTES},
    206: {"description": "partial content (Range)", "content": _BYTES},
    304: {"description": "not modified (If-None-Match matched the ETag)"},
    307: {"description": "signed object-store URL"},
    **schemas.errors(416),
}
"""OpenAPI ``responses`` of a route answering with :func:`object_response`."""


def object_response(
    backend: Backend,
    package: Package,
    range_header: str | None,
    if_range: str | None,
    if_none_match: str | None,
) -> Response:
    etag = f'"{package.sha256}"'
    common = {"ETag": etag, "Accept-Ranges": "bytes"}
    if device.etag_matches(etag, if_none_match):
        return Response(status_code=304, headers=common)
    url = backend.store.download_url(package.storage_key, backend.settings.download_url_expiry_s)
    if url is not None:
        return RedirectResponse(url, status_code=307, headers=common)
    wanted = ranges.parse_range(range_header, package.length)
    if wanted is not None and if_range is not None and if_range != etag:
        wanted = None
    store, key = backend.store, package.storage_key
    if wanted is None:

        def whole() -> Iterator[bytes]:
            yield from store.read(key)

        headers = {**common, "Content-Length": str(package.length)}
        return StreamingResponse(whole(), media_type="application/octet-stream", headers=headers)

    def part() -> Iterator[bytes]:
        yield from store.read(key, wanted.start, wanted.end)

    headers = {
        **common,
        "Content-Length": str(wanted.size),
        "Content-Range": wanted.content_range(),
    }
    return StreamingResponse(
        part(), status_code=206, media_type="application/octet-stream", headers=headers
    )
