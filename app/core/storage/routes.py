"""GET /files/<token>: the local backend's signed, expiring download URLs."""

from __future__ import annotations

import mimetypes
from collections.abc import AsyncIterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from app.core.config import SettingsDep
from app.core.errors import problems
from app.core.storage import DownloadLinks, StorageDep

router = APIRouter(tags=["files"])


@router.get(
    "/files/{token}",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}, **problems(403, 404)},
)
async def download(token: str, storage: StorageDep, settings: SettingsDep) -> StreamingResponse:
    """A stored file, by a URL the app signed (its signature is the credential); 403 when
    the link is forged or expired, 404 when the file is gone."""
    key = DownloadLinks(settings.secret_key).read(token)
    chunks = storage.open(key)
    first = await anext(chunks, b"")  # a missing file is a 404, not a broken stream
    media_type = mimetypes.guess_type(key)[0] or "application/octet-stream"

    async def body() -> AsyncIterator[bytes]:
        yield first
        async for chunk in chunks:
            yield chunk

    return StreamingResponse(body(), media_type=media_type, headers={"Cache-Control": "private"})
