"""Files on the local disk, under DATA_DIR/files; downloads through the app's own signed,
expiring URLs (`/files/<token>`, answered by `app.core.storage.routes`)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

import anyio
from itsdangerous import BadData, URLSafeSerializer

from app.core.errors import Forbidden
from app.core.storage.base import CHUNK_BYTES, FileMissing, Storage, capped, check_key

DOWNLOAD_PREFIX = "/files"


class DownloadLinks:
    """Signed download tokens naming a key and when they expire (itsdangerous)."""

    def __init__(self, secret_key: str) -> None:
        self._serializer = URLSafeSerializer(secret_key, salt="app.storage.download")

    def make(self, key: str, *, expires_in: int) -> str:
        return str(self._serializer.dumps([key, int(time.time()) + expires_in]))

    def read(self, token: str) -> str:
        """The key a token names; 403 when it is forged, altered or expired."""
        try:
            key, expires_at = self._serializer.loads(token)
        except (BadData, ValueError, TypeError):
            raise Forbidden("This download link is not valid") from None
        if not isinstance(expires_at, int) or expires_at <= time.time():
            raise Forbidden("This download link has expired")
        return check_key(str(key))


class LocalStorage(Storage):
    def __init__(self, root: Path, *, links: DownloadLinks) -> None:
        self.root = root.resolve()
        self.links = links

    def _path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        if not path.is_relative_to(self.root):  # belt and braces: check_key refuses ".."
            raise FileMissing("File not found")
        return path

    async def save(
        self, key: str, chunks: AsyncIterable[bytes], *, content_type: str, max_bytes: int
    ) -> int:
        path = anyio.Path(self._path(key))
        await path.parent.mkdir(parents=True, exist_ok=True)
        # Written aside and renamed: a reader never sees half a file, a refused one leaves none.
        partial = path.with_name(f".{uuid.uuid4().hex}.part")
        size = 0
        try:
            async with await anyio.open_file(partial, "wb") as file:
                async for chunk in capped(chunks, max_bytes):
                    await file.write(chunk)
                    size += len(chunk)
            await partial.rename(path)
        finally:
            await partial.unlink(missing_ok=True)
        return size

    async def open(self, key: str) -> AsyncIterator[bytes]:
        try:
            file = await anyio.open_file(self._path(key), "rb")
        except FileNotFoundError:
            raise FileMissing("File not found") from None
        async with file:
            while chunk := await file.read(CHUNK_BYTES):
                yield chunk

    async def delete(self, key: str) -> None:
        await anyio.Path(self._path(key)).unlink(missing_ok=True)

    async def url(self, key: str, *, expires_in: int) -> str:
        return f"{DOWNLOAD_PREFIX}/{self.links.make(check_key(key), expires_in=expires_in)}"
