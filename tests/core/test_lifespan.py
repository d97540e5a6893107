"""What the application's lifespan does beyond opening and closing services."""

from __future__ import annotations

import gc
from typing import Any

from asgi_lifespan import LifespanManager
from fastapi import Request

from app.core.queue import broker
from app.main import create_app
from tests.conftest import Services, make_settings


async def test_start_up_leaves_the_long_lived_objects_to_no_collection_and_shutdown_undoes_it(
    services: Services,
) -> None:
    gc.unfreeze()  # whatever an earlier app in this process left frozen
    gc.disable()  # as `app serve` starts (app/__main__.py)
    try:
        app = create_app(make_settings(services))
        async with LifespanManager(app):
            # Modules, routes, pools: a full collection would walk them all, for nothing.
            assert gc.get_freeze_count() > 10_000
            assert gc.isenabled()  # collection is back for what the requests make
        assert gc.get_freeze_count() == 0
    finally:
        gc.enable()


def _request_app(overrides: dict[Any, Any]) -> object:
    factory = overrides.get(Request)
    return None if factory is None else factory().app


async def test_in_process_tasks_get_the_newest_running_app_when_lifespans_overlap(
    services: Services,
) -> None:
    """A test's own app can start inside the session's and stop before it: tasks must then get
    the app still running, not the stopped one nor none at all."""
    before = _request_app(broker.dependency_overrides)
    first, second = create_app(make_settings(services)), create_app(make_settings(services))
    first_running, second_running = LifespanManager(first), LifespanManager(second)
    await first_running.__aenter__()
    assert _request_app(broker.dependency_overrides) is first
    await second_running.__aenter__()
    assert _request_app(broker.dependency_overrides) is second
    await first_running.__aexit__(None, None, None)  # the older one stops first
    assert _request_app(broker.dependency_overrides) is second
    await second_running.__aexit__(None, None, None)
    assert _request_app(broker.dependency_overrides) is before
