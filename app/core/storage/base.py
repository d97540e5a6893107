"""The `Storage` interface, file keys, and storing an upload: its type sniffed from its bytes
against an allow-list (415), its size capped while it streams (413), its name made here."""

from __future__ import annotations

import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from dataclasses import dataclass

import filetype
from fastapi import UploadFile

from app.core.errors import NotFound, PayloadTooLarge, UnsupportedMediaType

CHUNK_BYTES = 64 * 1024
# Enough of the start of a file for every signature filetype knows.
SNIFF_BYTES = 8 * 1024
# Keys are made by the app: lower-case segments, one extension; no "..", no absolute path.
_KEY = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}(/[a-z0-9][a-z0-9_-]{0,63}){0,7}(\.[a-z0-9]{1,8})?")

IMAGE_TYPES: Mapping[str, str] = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/gif": "gif",
    "image/webp": "webp",
}


class InvalidKey(ValueError):
    """A file key that is not one the app makes (a path traversal attempt, among others)."""


class FileMissing(NotFound):
    pass


def check_key(key: str) -> str:
    if not _KEY.fullmatch(key):
        raise InvalidKey(f"not a file key: {key!r}")
    return key


@dataclass(frozen=True, slots=True)
class StoredFile:
    key: str
    content_type: str
    size: int


async def capped(chunks: AsyncIterable[bytes], max_bytes: int) -> AsyncIterator[bytes]:
    """The chunks, until their total passes `max_bytes`: then 413."""
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        if total > max_bytes:
            raise PayloadTooLarge(f"The file exceeds {max_bytes} bytes.")
        yield chunk


class Storage(ABC):
    """Where files live. Keys come from the app (`store_upload`), never from a client."""

    @abstractmethod
    async def save(
        self, key: str, chunks: AsyncIterable[bytes], *, content_type: str, max_bytes: int
    ) -> int:
        """Write the file from `chunks`, at most `max_bytes` (else 413 and nothing is kept);
        return its size."""

    @abstractmethod
    def open(self, key: str) -> AsyncIterator[bytes]:
        """The file's bytes, in chunks; FileMissing (404) when there is none."""

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Remove the file; nothing when it is already gone."""

    @abstractmethod
    async def url(self, key: str, *, expires_in: int) -> str:
        """A download URL that stops working after `expires_in` seconds."""

    async def aclose(self) -> None:  # noqa: B027 - a backend with nothing to release keeps it
        """Release what the backend holds open (connections); the app's shutdown calls it."""


async def store_upload(
    storage: Storage,
    upload: UploadFile,
    *,
    prefix: str,
    max_bytes: int,
    allowed: Mapping[str, str] = IMAGE_TYPES,
) -> StoredFile:
    """Store an upload under `prefix/<random>.<ext>`. The type is read from the file's own
    bytes (the client's Content-Type and file name are ignored) and must be in `allowed`
    (a MIME type to extension map): else 415. Over `max_bytes`: 413."""
    head = await upload.read(SNIFF_BYTES)
    kind = filetype.guess(head) if head else None
    if kind is None or kind.mime not in allowed:
        accepted = ", ".join(sorted(allowed))
        raise UnsupportedMediaType(f"The file's content is not one of: {accepted}.")
    key = check_key(f"{prefix}/{uuid.uuid4().hex}.{allowed[kind.mime]}")

    async def chunks() -> AsyncIterator[bytes]:
        yield head
        while chunk := await upload.read(CHUNK_BYTES):
            yield chunk

    size = await storage.save(key, chunks(), content_type=kind.mime, max_bytes=max_bytes)
    return StoredFile(key=key, content_type=kind.mime, size=size)
