"""Blobs in an S3-compatible object store (AWS S3, MinIO, Ceph RGW) through boto3.

Uploads stream as multipart uploads with the size cap enforced while reading
(an aborted upload leaves nothing behind); downloads are offloaded to the
store with presigned GET URLs, so vehicles fetch bytes from the store or its
CDN and the API only answers a redirect.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from redstone_cloud.errors import CloudError, NotFound, TooLarge
from redstone_cloud.settings import S3Settings
from redstone_cloud.storage.base import CHUNK, BlobInfo

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

PART = 8 * 1024 * 1024
"""Multipart part size (S3 wants at least 5 MiB for every part but the last)."""


class StorageError(CloudError):
    """The object store failed or refused a request."""

    status = 502


class S3Store:
    def __init__(self, settings: S3Settings) -> None:
        self.bucket = settings.bucket
        self.client: S3Client = boto3.client(
            "s3",
            endpoint_url=settings.endpoint or None,
            region_name=settings.region,
            aws_access_key_id=settings.access_key or None,
            aws_secret_access_key=settings.secret_key or None,
            config=Config(
                signature_version="s3v4", retries={"max_attempts": 5, "mode": "standard"}
            ),
        )

    def put(self, key: str, source: BinaryIO, max_bytes: int) -> BlobInfo:
        digest = hashlib.sha256()
        length = 0
        try:
            upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)
            upload_id = upload["UploadId"]
            parts: list[CompletedPartTypeDef] = []
            try:
                while True:
                    buffer = bytearray()
                    while len(buffer) < PART and (chunk := source.read(CHUNK)):
                        buffer += chunk
                    if not buffer and parts:
                        break
                    length += len(buffer)
                    if length > max_bytes:
                        raise TooLarge(f"upload exceeds the {max_bytes}-byte limit")
                    digest.update(buffer)
                    number = len(parts) + 1
                    answer = self.client.upload_part(
                        Bucket=self.bucket,
                        Key=key,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=bytes(buffer),
                    )
                    parts.append({"ETag": answer["ETag"], "PartNumber": number})
                    if len(buffer) < PART:
                        break
                self.client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
            except BaseException:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
                raise
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"object store refused {key!r}: {exc}") from exc
        return BlobInfo(key, length, digest.hexdigest())

    def read(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        try:
            if start == 0 and end is None:  # no Range: an empty object has no byte 0
                answer = self.client.get_object(Bucket=self.bucket, Key=key)
            else:
                wanted = f"bytes={start}-" + ("" if end is None else str(end))
                answer = self.client.get_object(Bucket=self.bucket, Key=key, Range=wanted)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise NotFound(f"blob {key!r} is missing from storage") from exc
            raise StorageError(f"object store refused {key!r}: {exc}") from exc
        body = answer["Body"]
        try:
            yield from body.iter_chunks(CHUNK)
        finally:
            body.close()

    def size(self, key: str) -> int:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"]
        except ClientError as exc:
            raise NotFound(f"blob {key!r} is missing from storage") from exc

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"object store refused deleting {key!r}: {exc}") from exc

    def download_url(self, key: str, expires_s: int) -> str | None:
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_s
        )
