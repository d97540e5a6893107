"""The application factory: `create_app(settings)` builds the FastAPI app and its lifespan."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Iterable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.telemetry import TelemetryConfig

from app.core import metrics
from app.core.admin import ADMIN_URL, bind_admin, mount_admin
from app.core.auth import Authenticator, install_credential_docs
from app.core.cache import CacheService, set_default_cache
from app.core.config import QueueBroker, Settings, get_settings
from app.core.db import Database
from app.core.docs import install_docs
from app.core.errors import install_error_handlers, install_problem_docs, problems
from app.core.events import add_events_middleware
from app.core.events import drain as drain_events
from app.core.health import LivenessProbeMiddleware
from app.core.health import router as health_router
from app.core.http import (
    DOCS_PATHS,
    BodySizeLimitMiddleware,
    HttpMethodsMiddleware,
    security_headers,
)
from app.core.logging import RequestContextMiddleware, configure_logging
from app.core.mail import MailService, MailTemplates
from app.core.modules import DEFAULT_PACKAGES, ModuleSpec, discover_modules
from app.core.outbox import OutboxRelay, outbox_middleware
from app.core.queue import bind_app, broker
from app.core.ratelimit import RateLimiter, default_rate_limit
from app.core.redis import RedisCircuit, create_redis
from app.core.sentry import configure_sentry
from app.core.storage import create_storage
from app.core.storage.routes import router as storage_router
from app.core.tenancy import Memberships
from app.core.tracing import configure_tracing, export_configured, trace_database

API_PREFIX = "/api/v1"


# The apps whose lifespan is running in this process, oldest first. Their lives can overlap (a
# test's own app inside the session's): in-process tasks get the newest one's Request, and an
# app that stops hands them back to the newest one still running, not to whatever was there
# when it started (that could be an app that has stopped since).
_running_apps: list[FastAPI] = []


def _authenticator(
    modules: Iterable[ModuleSpec], settings: Settings, database: Database
) -> Authenticator | None:
    factories = [spec.authenticator for spec in modules if spec.authenticator is not None]
    if len(factories) > 1:
        raise RuntimeError("more than one module provides an authenticator")
    return factories[0](settings, database) if factories else None


def _memberships(
    modules: Iterable[ModuleSpec], settings: Settings, database: Database
) -> Memberships | None:
    factories = [spec.memberships for spec in modules if spec.memberships is not None]
    if len(factories) > 1:
        raise RuntimeError("more than one module provides memberships")
    return factories[0](settings, database) if factories else None


def _outbox_relay(settings: Settings, database: Database) -> OutboxRelay | None:
    """A worker relays the outbox to the queue (OUTBOX_RELAY_IN_WORKER); with the in-memory
    queue there is no worker, and the app relays to itself."""
    in_worker = broker.is_worker_process and settings.outbox_relay_in_worker
    if in_worker or settings.queue_broker is QueueBroker.MEMORY:
        return OutboxRelay(database, settings)
    return None


def _lifespan(
    settings: Settings, modules: list[ModuleSpec], module_packages: Iterable[str]
) -> object:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_tracing()  # only when OTEL_* variables ask for an exporter
        database = Database(settings)
        trace_database(database.engine)
        redis = create_redis(settings)
        app.state.database = database
        app.state.redis = redis
        app.state.authenticator = _authenticator(modules, settings, database)
        app.state.memberships = _memberships(modules, settings, database)
        bind_admin(app, database)
        # One view of whether Redis is up, shared by its users in this process.
        circuit = RedisCircuit(settings.redis_retry_after)
        app.state.cache = CacheService(
            redis,
            prefix=settings.app_name,
            default_ttl=settings.cache_default_ttl,
            circuit=circuit,
        )
        previous_cache = set_default_cache(app.state.cache)
        app.state.rate_limiter = RateLimiter(redis, settings, circuit=circuit)
        app.state.storage = create_storage(settings)
        app.state.mailer = MailService(settings, MailTemplates.discover(module_packages))
        broker.configure(settings)
        outbox_middleware.configure(
            max_retries=settings.queue_max_retries, base_delay=settings.queue_retry_delay
        )
        if not broker.is_worker_process:  # a worker starts the broker itself
            await broker.startup()
        # In-process tasks (tests, QUEUE_BROKER=memory) get this app's dependencies.
        _running_apps.append(app)
        bind_app(app)
        outbox_middleware.bind(database)
        metrics.bind_database(database)
        app.state.outbox_relay = _outbox_relay(settings, database)
        if app.state.outbox_relay is not None:
            app.state.outbox_relay.start()
        if settings.gc_freeze_after_startup:
            # What start-up built lives as long as the process; out of the collector's sight,
            # a full collection no longer walks it while requests wait (docs/performance.md).
            gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()
            if app.state.outbox_relay is not None:
                await app.state.outbox_relay.stop()
            await drain_events()
            if not broker.is_worker_process:
                await broker.shutdown()
            _running_apps.remove(app)
            if _running_apps:
                bind_app(_running_apps[-1])
                outbox_middleware.bind(_running_apps[-1].state.database)
                metrics.bind_database(_running_apps[-1].state.database)
            else:
                outbox_middleware.bind(None)
                metrics.bind_database(None)
                bind_app(None)
            set_default_cache(previous_cache)
            await app.state.storage.aclose()
            await redis.aclose()
            await database.dispose()

    return lifespan


# FastAPI instruments requests with OpenTelemetry whenever a provider is configured, and checks
# for one on every request; with no traces configured all of it is off.
_TELEMETRY_OFF: TelemetryConfig = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
}


def _not_traced(scope: MutableMapping[str, Any]) -> bool:
    return bool(scope.get("path") == "/metrics")  # a scrape every few seconds is not news


# The exporter is ours (`configure_tracing`, shared with the worker): FastAPI adds none.
_TELEMETRY_ON: TelemetryConfig = {"auto_configure": False, "exclude": _not_traced}


def _include_modules(app: FastAPI, modules: Iterable[ModuleSpec], settings: Settings) -> None:
    """Each module's router under /api/v1/<module>. Every API route is rate limited (unless
    RATE_LIMIT_ENABLED is off) and may find a backing service down."""
    limits = [Depends(default_rate_limit)] if settings.rate_limit_enabled else []
    for spec in sorted(modules, key=lambda item: item.route_order):  # stable: then by name
        if spec.router is not None:
            app.include_router(
                spec.router,
                prefix=API_PREFIX + spec.url_prefix,
                tags=list(spec.tags) or [spec.name],
                dependencies=limits,
                responses=problems(429, 503),
            )


def create_app(
    settings: Settings | None = None, *, module_packages: Iterable[str] = DEFAULT_PACKAGES
) -> FastAPI:
    settings = settings or get_settings()
    module_packages = tuple(module_packages)
    configure_logging(level=settings.log_level, json_logs=settings.json_logs)
    configure_sentry(settings)
    modules = discover_modules(module_packages)
    # FastAPI's request spans, when traces go somewhere: our exporter or the deployment's.
    traced = settings.telemetry_enabled or export_configured()

    app = FastAPI(
        title=settings.app_name,
        version="0.1.0",
        lifespan=_lifespan(settings, modules, module_packages),  # type: ignore[arg-type]
        openapi_url="/openapi.json" if settings.serves_openapi else None,
        docs_url=None,  # served from the installed package below: no CDN
        redoc_url=None,
        telemetry=_TELEMETRY_ON if traced else _TELEMETRY_OFF,
    )
    app.state.settings = settings
    app.state.modules = modules

    install_error_handlers(app)
    app.include_router(health_router)
    if settings.metrics_enabled:
        app.include_router(metrics.router)
    _include_modules(app, modules, settings)
    # After the modules: a request tries every route included before its own.
    app.include_router(storage_router)
    install_problem_docs(app)
    install_credential_docs(app)
    mount_admin(app, settings, modules)
    if settings.serves_openapi:
        install_docs(app, openapi_url="/openapi.json")

    app.add_middleware(HttpMethodsMiddleware, api=app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=settings.cors_allow_credentials,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    # Domain events are delivered after the response, still inside the request's context.
    add_events_middleware(app)
    if settings.metrics_enabled:
        # Inside the request-id layer: it sees the 500 that layer makes of an exception.
        app.add_middleware(metrics.MetricsMiddleware)
    # Every response, a 500 included, carries the request id and the security headers, and is
    # logged.
    hsts = settings.is_production
    app.add_middleware(
        RequestContextMiddleware,
        response_headers=security_headers(hsts=hsts),
        page_headers={path: security_headers(hsts=hsts, docs=True) for path in DOCS_PATHS},
        prefix_headers=(
            {ADMIN_URL + "/": security_headers(hsts=hsts, admin=True)}
            if settings.serves_admin
            else None
        ),
    )
    # Outermost: liveness probes are answered before everything else.
    app.add_middleware(
        LivenessProbeMiddleware, headers=security_headers(hsts=settings.is_production)
    )
    return app
