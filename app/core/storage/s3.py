"""Files in an S3-compatible bucket (AWS S3, MinIO, Ceph ...) through aioboto3; downloads
through presigned GET URLs, which the store itself refuses once they expire."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

import aioboto3
from aiobotocore.config import AioConfig
from botocore.exceptions import ClientError

from app.core.storage.base import CHUNK_BYTES, FileMissing, Storage, capped, check_key

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client


class S3Storage(Storage):
    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        public_endpoint_url: str | None = None,
    ) -> None:
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        # Presigned URLs name the host a browser reaches (MinIO behind a proxy, say).
        self.public_endpoint_url = public_endpoint_url or endpoint_url
        # Credentials from the settings, else from the usual AWS chain (role, profile ...).
        self.session = aioboto3.Session(
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            region_name=region,
        )
        # Path-style addressing works with every S3-compatible server, not only AWS.
        self.config = AioConfig(signature_version="s3v4", s3={"addressing_style": "path"})
        # A client is costly to make and pools its connections: one per endpoint, kept open
        # until `aclose` (the app's shutdown).
        self._clients: dict[str | None, S3Client] = {}
        self._stack = AsyncExitStack()
        self._lock = asyncio.Lock()

    async def _client(self, endpoint_url: str | None = None) -> S3Client:
        endpoint_url = endpoint_url or self.endpoint_url
        async with self._lock:
            if endpoint_url not in self._clients:
                self._clients[endpoint_url] = await self._stack.enter_async_context(
                    self.session.client("s3", endpoint_url=endpoint_url, config=self.config)
                )
            return self._clients[endpoint_url]

    async def aclose(self) -> None:
        async with self._lock:
            self._clients.clear()
            await self._stack.aclose()

    async def save(
        self, key: str, chunks: AsyncIterable[bytes], *, content_type: str, max_bytes: int
    ) -> int:
        # Held in memory, at most `max_bytes`: refused before anything reaches the bucket.
        check_key(key)
        body = bytearray()
        async for chunk in capped(chunks, max_bytes):
            body += chunk
        s3 = await self._client()
        await s3.put_object(Bucket=self.bucket, Key=key, Body=bytes(body), ContentType=content_type)
        return len(body)

    async def open(self, key: str) -> AsyncIterator[bytes]:
        check_key(key)
        s3 = await self._client()
        try:
            response = await s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                raise FileMissing("File not found") from None
            raise
        body = response["Body"]
        async with body:  # the connection goes back to the pool, read to the end or not
            async for chunk in body.iter_chunks(CHUNK_BYTES):
                yield chunk

    async def delete(self, key: str) -> None:
        check_key(key)
        s3 = await self._client()
        await s3.delete_object(Bucket=self.bucket, Key=key)

    async def url(self, key: str, *, expires_in: int) -> str:
        check_key(key)
        s3 = await self._client(self.public_endpoint_url)
        return await s3.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_in
        )

    async def create_bucket(self) -> None:
        """Create the bucket if it does not exist (`app storage init`, the tests)."""
        s3 = await self._client()
        try:
            await s3.head_bucket(Bucket=self.bucket)
        except ClientError:
            await s3.create_bucket(Bucket=self.bucket)
