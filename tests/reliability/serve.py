"""The entry point of the tests' own servers (`python -m tests.reliability.<module>`): the app
a factory makes, run as `app serve` runs it, on the environment's SERVER_HOST and SERVER_PORT."""

from __future__ import annotations

import uvicorn

from app.core.config import get_settings


def serve(factory: str) -> None:
    """Run the app made by `factory` ("module:function")."""
    settings = get_settings()
    uvicorn.run(
        factory,
        factory=True,
        host=settings.server_host,
        port=settings.server_port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=settings.server_graceful_timeout,
    )
