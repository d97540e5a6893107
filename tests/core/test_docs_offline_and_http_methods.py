"""/docs works with no network beyond this server, every GET answers HEAD, and OPTIONS says
which methods a path allows (RFC 9110)."""

from __future__ import annotations

import re
import uuid

from httpx import AsyncClient


async def test_the_docs_page_loads_nothing_from_another_host(client: AsyncClient) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    assert "://" not in page.text  # every script, style and image is a path on this server
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert {"/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"} <= set(assets)
    for asset in assets:
        served = await client.get(asset)
        assert served.status_code == 200, asset
        assert len(served.content) > 100
    assert "oauth2RedirectUrl" in page.text
    redirect = await client.get("/docs/oauth2-redirect")
    assert redirect.status_code == 200
    assert "://" not in redirect.text


async def test_every_get_answers_head_with_its_headers_and_no_body(client: AsyncClient) -> None:
    for path in ("/openapi.json", "/health/ready", "/docs"):
        get = await client.get(path)
        head = await client.head(path)
        assert head.status_code == get.status_code == 200, path
        assert head.content == b""
        assert head.headers["content-type"] == get.headers["content-type"]
        assert head.headers["content-length"] == get.headers["content-length"]


async def test_head_of_a_protected_route_is_refused_alike(client: AsyncClient) -> None:
    head = await client.head("/api/v1/users/me")
    assert head.status_code == 401  # not 405: HEAD runs the GET route, its checks included
    assert head.content == b""


async def test_options_lists_the_allowed_methods(client: AsyncClient) -> None:
    me = await client.options("/api/v1/users/me")
    assert me.status_code == 204
    assert me.headers["allow"] == "DELETE, GET, HEAD, OPTIONS, PATCH"
    login_route = await client.options("/api/v1/auth/login")
    assert login_route.headers["allow"] == "OPTIONS, POST"
    # A templated path of an included router, and a route kept out of the OpenAPI document.
    one_user = await client.options(f"/api/v1/users/{uuid.uuid4()}")
    assert one_user.headers["allow"] == "DELETE, GET, HEAD, OPTIONS, PATCH"
    scrape = await client.options("/metrics")
    assert scrape.headers["allow"] == "GET, HEAD, OPTIONS"
    missing = await client.options("/api/v1/nowhere")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
