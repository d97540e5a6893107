"""The application factory: `create_app(settings)` builds the FastAPI app and its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app.core.config import Settings, get_settings
from app.core.db import Database
from app.core.errors import install_error_handlers
from app.core.health import router as health_router
from app.core.http import BodySizeLimitMiddleware, SecurityHeadersMiddleware
from app.core.logging import RequestContextMiddleware, configure_logging
from app.core.modules import DEFAULT_PACKAGES, ModuleSpec, discover_modules
from app.core.redis import create_redis

API_PREFIX = "/api/v1"


def _lifespan(settings: Settings) -> object:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = Database(settings)
        redis = create_redis(settings)
        app.state.database = database
        app.state.redis = redis
        try:
            yield
        finally:
            await redis.aclose()
            await database.dispose()

    return lifespan


def _api_router(modules: Iterable[ModuleSpec]) -> APIRouter:
    api = APIRouter(prefix=API_PREFIX)
    for spec in modules:
        if spec.router is not None:
            api.include_router(
                spec.router, prefix=spec.url_prefix, tags=list(spec.tags) or [spec.name]
            )
    return api


def create_app(
    settings: Settings | None = None, *, module_packages: Iterable[str] = DEFAULT_PACKAGES
) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(level=settings.log_level, json_logs=settings.json_logs)
    modules = discover_modules(module_packages)

    app = FastAPI(
        title=settings.app_name,
        version="0.1.0",
        lifespan=_lifespan(settings),  # type: ignore[arg-type]
        docs_url=None if settings.is_production else "/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.modules = modules

    install_error_handlers(app)
    app.include_router(health_router)
    app.include_router(_api_router(modules))

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    # Every response, a 500 included, carries the request id and is logged...
    app.add_middleware(RequestContextMiddleware)
    # ...and the security headers (outermost, so nothing escapes them).
    app.add_middleware(SecurityHeadersMiddleware, hsts=settings.is_production)
    return app
