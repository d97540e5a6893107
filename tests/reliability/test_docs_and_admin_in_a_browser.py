"""In a real headless browser (Debian's Chromium, driven by Playwright): /docs renders its
operations with nothing loaded from another host, and "Authorize" signs in and its token works;
an administrator signs in to /admin and opens the users view. Screenshots go to the test's
temporary folder, or to SCREENSHOTS_DIR when set: `SCREENSHOTS_DIR=docs/screenshots make e2e`
refreshes the ones the docs show. `make e2e` installs Chromium when it is missing."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Page, async_playwright

from app.modules.users.models import User
from tests.conftest import TEST_SECRET, Services
from tests.factories.users import DEFAULT_PASSWORD
from tests.reliability.conftest import Uvicorn, server_env
from tests.support import PROJECT_ROOT

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where the screenshots go: a run does not rewrite the tracked ones unless asked."""
    folder = os.environ.get("SCREENSHOTS_DIR")
    return PROJECT_ROOT / folder if folder else tmp_path


@pytest.fixture
def server(services: Services, tmp_path: Path) -> Iterator[Uvicorn]:
    env = server_env(
        DATABASE_URL=services.database_url,
        REDIS_URL=services.redis_url,
        SECRET_KEY=TEST_SECRET,
        APP_ENV="development",
        QUEUE_BROKER="memory",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(services.smtp_port),
        DATA_DIR=str(tmp_path),
        RATE_LIMIT_DEFAULT="10000/minute",
    )
    server = Uvicorn(env).start()
    try:
        yield server
    finally:
        server.stop()


async def _authorize_and_call_me(page: Page, admin: User) -> None:
    await page.get_by_role("button", name="Authorize").first.click()
    dialog = page.locator(".modal-ux")
    await dialog.locator("#oauth_username").fill(admin.username)
    await dialog.locator("#oauth_password").fill(DEFAULT_PASSWORD)
    # The password form's button (the dialog also offers the two API-key schemes).
    await dialog.get_by_role("button", name="Apply given OAuth2 credentials").click()
    await dialog.locator("button", has_text="Logout").wait_for()  # the token was accepted
    await dialog.locator("button", has_text="Close").first.click()
    operation = page.locator("#operations-users-read_me_api_v1_users_me_get")
    await operation.locator(".opblock-summary").click()
    await operation.locator("button", has_text="Try it out").click()
    await operation.locator("button", has_text="Execute").click()
    status = operation.locator(".live-responses-table .response .response-col_status").first
    await status.wait_for()
    assert (await status.inner_text()).strip() == "200"
    responses = operation.locator(".live-responses-table")
    assert admin.email in await responses.inner_text()
    await responses.scroll_into_view_if_needed()  # the screenshot shows the answer


async def test_docs_render_offline_and_admins_sign_in_to_the_panel(
    server: Uvicorn, make_user: object, screenshots: Path
) -> None:
    admin: User = await make_user(  # type: ignore[operator]
        email="root@example.com", username="root", role="admin"
    )
    await make_user(email="alice@example.com", username="alice")  # type: ignore[operator]
    hosts: set[str] = set()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM)
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("request", lambda request: hosts.add(urlsplit(request.url).netloc))

        await page.goto(f"{server.url}/docs")
        await page.locator(".opblock").first.wait_for()
        assert await page.locator(".opblock").count() > 10
        await _authorize_and_call_me(page, admin)
        await page.screenshot(path=str(screenshots / "docs.png"))
        assert hosts == {urlsplit(server.url).netloc}  # nothing from another host

        await page.goto(f"{server.url}/admin/login")
        await page.locator("input[name=username]").fill(admin.username)
        await page.locator("input[name=password]").fill(DEFAULT_PASSWORD)
        await page.locator("button[type=submit]").click()
        await page.wait_for_url(f"{server.url}/admin/")
        await page.goto(f"{server.url}/admin/user/list")
        table = page.locator("table")
        await table.wait_for()
        text = await table.inner_text()
        assert "alice@example.com" in text
        assert "root@example.com" in text
        await page.screenshot(path=str(screenshots / "admin-users.png"))
        await browser.close()
