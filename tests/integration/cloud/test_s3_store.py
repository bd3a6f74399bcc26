"""S3-compatible storage against a real S3 protocol server (moto's, on loopback)."""

from __future__ import annotations

import hashlib
import io
import random
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
from fastapi.testclient import TestClient

from redstone_cloud.api.app import create_app
from redstone_cloud.backend import open_backend
from redstone_cloud.errors import NotFound, TooLarge
from redstone_cloud.settings import S3Settings
from redstone_cloud.storage.s3 import PART, S3Store
from tests.integration.cloud.conftest import make_settings
from tests.integration.cloud.fleet import Fleet

moto_server = pytest.importorskip("moto.server")


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Settings]:
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    settings = S3Settings(
        endpoint=f"http://{host}:{port}", bucket="redstone", access_key="k", secret_key="s"
    )
    boto3.client(
        "s3",
        endpoint_url=settings.endpoint,
        region_name=settings.region,
        aws_access_key_id="k",
        aws_secret_access_key="s",
    ).create_bucket(Bucket="redstone")
    yield settings
    server.stop()


def test_multipart_put_ranges_and_presigned_urls(s3: S3Settings) -> None:
    store = S3Store(s3)
    data = random.Random(1).randbytes(PART + 12345)
    info = store.put("packages/a/1", io.BytesIO(data), max_bytes=len(data))
    assert (info.length, info.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert store.size("packages/a/1") == len(data)
    assert b"".join(store.read("packages/a/1", 5, 9)) == data[5:10]
    assert b"".join(store.read("packages/a/1", PART)) == data[PART:]
    url = store.download_url("packages/a/1", 60)
    assert url is not None
    fetched = httpx.get(url, headers={"Range": "bytes=0-99"})
    assert fetched.status_code == 206 and fetched.content == data[:100]
    empty = store.put("packages/empty/1", io.BytesIO(b""), max_bytes=10)
    assert empty.length == 0 and b"".join(store.read("packages/empty/1")) == b""
    store.delete("packages/a/1")
    with pytest.raises(NotFound):
        store.size("packages/a/1")
    with pytest.raises(NotFound):
        list(store.read("packages/a/1"))


def test_oversized_upload_is_aborted(s3: S3Settings) -> None:
    store = S3Store(s3)
    with pytest.raises(TooLarge):
        store.put("packages/big/1", io.BytesIO(b"x" * (PART + 1)), max_bytes=PART)
    with pytest.raises(NotFound):
        store.size("packages/big/1")
    uploads = store.client.list_multipart_uploads(Bucket=s3.bucket)
    assert uploads.get("Uploads", []) == []


def test_device_download_redirects_to_the_store(
    s3: S3Settings, database_url: str, tmp_path: Path
) -> None:
    backend = open_backend(make_settings(database_url, tmp_path / "d", storage="s3", s3=s3))
    try:
        with TestClient(create_app(backend)) as client:
            fleet = Fleet(client)
            fleet.model()
            car = fleet.vehicle(1)
            data = b"offloaded" * 1000
            fleet.package("adas", "1.0", "adas-hw", data)
            fleet.assign(car, "adas-1.0")
            answer = fleet.device(
                car, "GET", "/api/v1/device/targets/adas-1.0", follow_redirects=False
            )
            assert answer.status_code == 307
            assert answer.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
            assert httpx.get(answer.headers["location"]).content == data
    finally:
        backend.close()
