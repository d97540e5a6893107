"""What the application's lifespan does beyond opening and closing services."""

from __future__ import annotations

import gc

from asgi_lifespan import LifespanManager

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
