"""What the application's lifespan does beyond opening and closing services."""

from __future__ import annotations

import gc
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from fastapi import Request

from app.core.queue import broker
from app.main import create_app
from tests.conftest import Services, make_settings


@pytest.mark.parametrize("freeze", [True, False])
async def test_start_up_freezes_the_long_lived_objects_when_set_and_shutdown_thaws_them(
    services: Services, freeze: bool
) -> None:
    gc.unfreeze()  # whatever an earlier app in this process left frozen
    app = create_app(make_settings(services, gc_freeze_after_startup=freeze))
    async with LifespanManager(app):
        # Modules, routes, pools: a full collection would walk them all, for nothing.
        assert (gc.get_freeze_count() > 10_000) is freeze
    assert gc.get_freeze_count() == 0


def _request_app(context: dict[Any, Any]) -> object:
    request = context.get(Request)
    return None if request is None else request.app


async def test_in_process_tasks_get_the_newest_running_app_when_lifespans_overlap(
    services: Services,
) -> None:
    """A test's own app can start inside the session's and stop before it: tasks must then get
    the app still running, not the stopped one nor none at all."""
    before = _request_app(broker.custom_dependency_context)
    first, second = create_app(make_settings(services)), create_app(make_settings(services))
    first_running, second_running = LifespanManager(first), LifespanManager(second)
    await first_running.__aenter__()
    assert _request_app(broker.custom_dependency_context) is first
    await second_running.__aenter__()
    assert _request_app(broker.custom_dependency_context) is second
    await first_running.__aexit__(None, None, None)  # the older one stops first
    assert _request_app(broker.custom_dependency_context) is second
    await second_running.__aexit__(None, None, None)
    assert _request_app(broker.custom_dependency_context) is before
