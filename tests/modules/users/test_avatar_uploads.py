"""PUT /api/v1/users/me/avatar: an image, told by its bytes, stored under a name the app makes,
downloaded through an expiring URL; every refusal answered with a problem."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import anyio
import httpx
import time_machine
from asgi_lifespan import LifespanManager
from httpx import AsyncClient

from app.main import create_app
from app.modules.users.models import User
from tests.conftest import RUN_DATA_DIR, Services, make_settings
from tests.factories.files import png
from tests.modules.conftest import Headers, bearer, login
from tests.support import http_client

AVATAR = "/api/v1/users/me/avatar"


async def upload(
    client: AsyncClient,
    headers: Headers,
    data: bytes,
    *,
    name: str = "me.png",
    content_type: str = "image/png",
) -> httpx.Response:
    return await client.put(AVATAR, headers=headers, files={"file": (name, data, content_type)})


async def test_an_uploaded_avatar_downloads_through_its_url(
    client: AsyncClient, user_headers: Headers
) -> None:
    image = png(16, 16)
    response = await upload(client, user_headers, image)
    assert response.status_code == 200, response.text
    url = response.json()["avatar_url"]
    assert url.startswith("/files/")
    assert "avatar_key" not in response.json()  # where it is stored is the app's business
    download = await client.get(url)  # the URL itself is the credential
    assert download.status_code == 200
    assert download.content == image
    assert download.headers["content-type"] == "image/png"
    me = (await client.get("/api/v1/users/me", headers=user_headers)).json()
    assert (await client.get(me["avatar_url"])).content == image


async def test_head_of_me_answers_like_get_without_a_body(
    client: AsyncClient, user_headers: Headers
) -> None:
    head = await client.head("/api/v1/users/me", headers=user_headers)
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == "application/json"


async def test_a_new_avatar_replaces_the_old_file_and_delete_removes_it(
    client: AsyncClient, user_headers: Headers
) -> None:
    first = (await upload(client, user_headers, png(2, 2))).json()["avatar_url"]
    second = (await upload(client, user_headers, png(3, 3))).json()["avatar_url"]
    assert (await client.get(first)).status_code == 404  # the old file is gone
    assert (await client.get(second)).status_code == 200
    removed = await client.delete(AVATAR, headers=user_headers)
    assert removed.status_code == 200
    assert removed.json()["avatar_url"] is None
    assert (await client.get(second)).status_code == 404


async def test_an_avatar_over_the_size_limit_is_refused(
    client: AsyncClient, user_headers: Headers
) -> None:
    response = await upload(client, user_headers, png(padding=600 * 1024))
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    me = (await client.get("/api/v1/users/me", headers=user_headers)).json()
    assert me["avatar_url"] is None


async def test_a_file_that_is_not_an_allowed_image_is_refused_whatever_it_claims(
    client: AsyncClient, user_headers: Headers
) -> None:
    for data, name in [
        (b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>", "a.png"),
        (b"%PDF-1.4 not an image", "a.png"),
        (b"", "empty.png"),
    ]:
        response = await upload(client, user_headers, data, name=name)
        assert response.status_code == 415, data
        assert response.headers["content-type"] == "application/problem+json"
    assert (await client.put(AVATAR, headers=user_headers)).status_code == 422  # no file


async def test_a_traversing_file_name_is_ignored(
    client: AsyncClient, user_headers: Headers
) -> None:
    name = f"../../../../tmp/pwned-{uuid.uuid4().hex}.png"
    response = await upload(client, user_headers, png(), name=name)
    assert response.status_code == 200
    assert not await anyio.Path("/tmp", Path(name).name).exists()  # noqa: S108
    stored = [path async for path in anyio.Path(RUN_DATA_DIR / "files" / "avatars").iterdir()]
    assert stored
    assert all(Path(name).stem not in path.name for path in stored)


async def test_a_forged_or_traversing_download_link_is_refused(client: AsyncClient) -> None:
    for path in ("/files/..%2F..%2Fetc%2Fpasswd", "/files/avatars%2Fx.png", "/files/abc.def"):
        response = await client.get(path)
        assert response.status_code in (403, 404), path
        assert response.headers["content-type"] == "application/problem+json"
    assert (
        await client.get("/files/WyJhdmF0YXJzL3gucG5nIiwgOTk5OTk5OTk5OV0.forged")
    ).status_code == 403


async def test_an_expired_download_url_is_refused(
    client: AsyncClient, user_headers: Headers
) -> None:
    url = (await upload(client, user_headers, png())).json()["avatar_url"]
    with time_machine.travel(time.time() + 3601, tick=False):
        response = await client.get(url)
    assert response.status_code == 403
    assert "expired" in response.json()["detail"]


async def test_anonymous_callers_cannot_upload(client: AsyncClient) -> None:
    assert (await upload(client, {}, png())).status_code == 401


async def test_with_the_s3_backend_the_url_is_presigned_and_serves_the_image(
    services: Services, s3_endpoint: str, user: User
) -> None:
    bucket = f"avatars-{uuid.uuid4().hex[:12]}"
    settings = make_settings(
        services,
        storage_backend="s3",
        s3_bucket=bucket,
        s3_endpoint_url=s3_endpoint,
        s3_region="us-east-1",
        s3_access_key_id="testing",
        s3_secret_access_key="testing",
    )
    app = create_app(settings)
    async with LifespanManager(app), http_client(app) as client:
        await app.state.storage.create_bucket()
        headers = bearer((await login(client, user.username))["access_token"])
        image = png(8, 8)
        response = await upload(client, headers, image)
        assert response.status_code == 200, response.text
        url = response.json()["avatar_url"]
        assert url.startswith(f"{s3_endpoint}/{bucket}/avatars/")
        async with httpx.AsyncClient() as outside:
            assert (await outside.get(url)).content == image
            await client.delete(AVATAR, headers=headers)
            assert (await outside.get(url)).status_code == 404
