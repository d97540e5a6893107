"""Both storage backends keep the same promises: what is saved reads back, a file over its
limit leaves nothing, a key the app would not make is refused, deleted means gone, and a
download URL serves the file. S3 runs against moto's server on loopback, not a mocked client."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.core.config import get_settings
from app.core.errors import PayloadTooLarge
from app.core.storage import (
    DownloadLinks,
    FileMissing,
    InvalidKey,
    LocalStorage,
    S3Storage,
    Storage,
)
from tests.conftest import TEST_SECRET
from tests.factories.files import png


async def chunks_of(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def read_all(storage: Storage, key: str) -> bytes:
    return b"".join([chunk async for chunk in storage.open(key)])


def s3_storage(endpoint: str, bucket: str) -> S3Storage:
    return S3Storage(
        bucket=bucket,
        endpoint_url=endpoint,
        region="us-east-1",
        access_key_id="testing",
        secret_access_key="testing",
    )


@pytest.fixture(scope="session")
async def s3(s3_endpoint: str) -> AsyncIterator[S3Storage]:
    """One bucket and client for this module's tests (each uses keys of its own, or none)."""
    storage = s3_storage(s3_endpoint, f"test-{uuid.uuid4().hex[:12]}")
    await storage.create_bucket()
    await storage.create_bucket()  # a second time is no error
    yield storage
    await storage.aclose()


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "files", links=DownloadLinks(TEST_SECRET))
    s3: S3Storage = request.getfixturevalue("s3")
    return s3


async def test_a_saved_file_reads_back_and_is_gone_once_deleted(storage: Storage) -> None:
    key = f"avatars/{uuid.uuid4().hex}.png"
    data = png(padding=200_000)
    size = await storage.save(key, chunks_of(data), content_type="image/png", max_bytes=len(data))
    assert size == len(data)
    assert await read_all(storage, key) == data
    await storage.delete(key)
    await storage.delete(key)  # already gone: no error
    with pytest.raises(FileMissing):
        await read_all(storage, key)


async def test_a_file_over_its_limit_is_refused_and_nothing_is_kept(storage: Storage) -> None:
    data = png(padding=5000)
    with pytest.raises(PayloadTooLarge):
        await storage.save(
            "avatars/big.png", chunks_of(data), content_type="image/png", max_bytes=len(data) - 1
        )
    with pytest.raises(FileMissing):
        await read_all(storage, "avatars/big.png")


@pytest.mark.parametrize(
    "key",
    ["../secret.png", "/etc/passwd", "avatars/../../x.png", "avatars/./x", "a\\b.png", "", "A.PNG"],
)
async def test_a_key_the_app_would_not_make_is_refused(storage: Storage, key: str) -> None:
    with pytest.raises(InvalidKey):
        await storage.save(key, chunks_of(b"x"), content_type="image/png", max_bytes=10)
    with pytest.raises(InvalidKey):
        await read_all(storage, key)
    with pytest.raises(InvalidKey):
        await storage.delete(key)
    with pytest.raises(InvalidKey):
        await storage.url(key, expires_in=60)


async def test_an_s3_download_url_is_presigned_and_serves_the_file(
    s3_endpoint: str, s3: S3Storage
) -> None:
    data = png()
    await s3.save("avatars/a.png", chunks_of(data), content_type="image/png", max_bytes=10_000)
    url = await s3.url("avatars/a.png", expires_in=60)
    assert url.startswith(s3_endpoint)
    query = parse_qs(urlparse(url).query)
    # S3 refuses the URL after that, or altered (moto's server checks neither: not tested here).
    assert query["X-Amz-Expires"] == ["60"]
    assert "X-Amz-Signature" in query
    async with httpx.AsyncClient() as http:
        response = await http.get(url)
        assert response.status_code == 200
        assert response.content == data
        assert response.headers["content-type"] == "image/png"


def test_storage_init_creates_the_bucket_or_the_folder(
    s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = f"init-{uuid.uuid4().hex[:12]}"
    environment = {
        "STORAGE_BACKEND": "s3",
        "S3_BUCKET": bucket,
        "S3_ENDPOINT_URL": s3_endpoint,
        "S3_REGION": "us-east-1",
        "S3_ACCESS_KEY_ID": "testing",
        "S3_SECRET_ACCESS_KEY": "testing",
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["storage", "init"])
        assert result.exit_code == 0, result.output
        assert f"bucket {bucket} ready" in result.output
        assert httpx.head(f"{s3_endpoint}/{bucket}").status_code == 200
        monkeypatch.setenv("STORAGE_BACKEND", "local")
        monkeypatch.setenv("DATA_DIR", str(tmp_path))
        get_settings.cache_clear()
        result = CliRunner().invoke(cli, ["storage", "init"])
        assert result.exit_code == 0, result.output
        assert (tmp_path / "files").is_dir()
    finally:
        get_settings.cache_clear()
