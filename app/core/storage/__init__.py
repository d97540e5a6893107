"""File storage: a `Storage` on the local disk (default, under DATA_DIR/files) or in an
S3-compatible bucket (STORAGE_BACKEND=s3), chosen by the settings.

    stored = await store_upload(storage, upload, prefix="avatars", max_bytes=512 * 1024)
    url = await storage.url(stored.key, expires_in=settings.storage_url_ttl)
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request

from app.core.config import Settings, StorageBackend
from app.core.storage.base import (
    IMAGE_TYPES,
    FileMissing,
    InvalidKey,
    Storage,
    StoredFile,
    check_key,
    store_upload,
)
from app.core.storage.local import DownloadLinks, LocalStorage
from app.core.storage.s3 import S3Storage


def create_storage(settings: Settings) -> Storage:
    if settings.storage_backend is StorageBackend.S3:
        assert settings.s3_bucket is not None  # the settings refuse s3 without a bucket
        return S3Storage(
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            public_endpoint_url=settings.s3_public_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key,
        )
    return LocalStorage(Path(settings.data_dir) / "files", links=DownloadLinks(settings.secret_key))


async def get_storage(request: Request) -> Storage:
    storage: Storage = request.app.state.storage
    return storage


StorageDep = Annotated[Storage, Depends(get_storage)]

__all__ = [
    "IMAGE_TYPES",
    "DownloadLinks",
    "FileMissing",
    "InvalidKey",
    "LocalStorage",
    "S3Storage",
    "Storage",
    "StorageDep",
    "StoredFile",
    "check_key",
    "create_storage",
    "get_storage",
    "store_upload",
]
