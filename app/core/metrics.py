"""Prometheus metrics: the metric objects, the request middleware and the `/metrics` route.

Every metric is a module-level object here (prometheus-client's idiom); the code that counts
imports it: `metrics.MAIL_SENT.inc()`. Figures that live elsewhere (the database pool, the
outbox backlog) are read when Prometheus scrapes, not kept up to date on every change.

With several server processes (SERVER_WORKERS > 1) `app serve` gives them a
PROMETHEUS_MULTIPROC_DIR (`multiprocess_directory`): prometheus-client then keeps each
process's figures in files there and `/metrics` adds them up (its multiprocess mode; README,
"Metrics").
"""

from __future__ import annotations

import multiprocessing
import os
import secrets
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager

import structlog
from fastapi import APIRouter, Request, Response
from fastapi.routing import iter_route_contexts
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import QueuePool
from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.db import Database
from app.core.errors import Unauthorized

log = structlog.get_logger("app.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED_ROUTE = "<unmatched>"  # one series for every path no route answers (404s, scans)

# --- HTTP ---
HTTP_REQUESTS = Counter(
    "http_requests",
    "HTTP requests answered, by route template, method and status class (2xx ...).",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "Time from a request's arrival to the end of its response, by route template and method.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
HTTP_IN_FLIGHT = Gauge(
    "http_requests_in_flight",
    "Requests being handled right now.",
    multiprocess_mode="livesum",
)

# --- backing services ---
REDIS_ERRORS = Counter(
    "redis_errors", "Redis calls that failed (refused, reset, timed out).", ["error"]
)
RATE_LIMIT_REFUSALS = Counter(
    "ratelimit_refusals", "Hits refused because their client was over a limit.", ["scope"]
)
MAIL_SENT = Counter("mail_sent", "Messages handed to the SMTP server.")
MAIL_FAILED = Counter("mail_failed", "Messages the SMTP server did not take.")

# --- queue ---
TASKS_ENQUEUED = Counter("queue_tasks_enqueued", "Tasks sent to the queue.", ["task"])
TASKS_STARTED = Counter("queue_tasks_started", "Tasks a worker started.", ["task"])
TASKS_SUCCEEDED = Counter("queue_tasks_succeeded", "Tasks that finished without error.", ["task"])
TASKS_FAILED = Counter("queue_tasks_failed", "Task runs that raised.", ["task"])
TASKS_RETRIED = Counter("queue_tasks_retried", "Failed tasks scheduled to run again.", ["task"])
TASK_DURATION = Histogram(
    "queue_task_duration_seconds",
    "How long a task ran, by task name.",
    ["task"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0),
)

# --- read at scrape time ---
OUTBOX_ENTRIES = Gauge(
    "outbox_entries",
    "Outbox entries waiting (pending), handed to the queue (queued) or given up on (dead).",
    ["status"],
    multiprocess_mode="mostrecent",
)

# Figures read from the database at scrape time: `async hook(database)` sets its gauges. A core
# service registers its own (the outbox does), so this module imports none of them.
ScrapeHook = Callable[[Database], Awaitable[None]]
scrape_hooks: list[ScrapeHook] = []


class PoolCollector(Collector):
    """The database pool of this process, read at scrape time (SQLAlchemy's pool status)."""

    def __init__(self) -> None:
        self.database: Database | None = None

    def collect(self) -> Iterable[GaugeMetricFamily]:
        pool = self.database.engine.pool if self.database is not None else None
        if not isinstance(pool, QueuePool):
            return
        figures = {
            "db_pool_size": ("Connections the pool keeps open.", pool.size()),
            "db_pool_checked_out": ("Connections in use.", pool.checkedout()),
            "db_pool_idle": ("Connections open and idle in the pool.", pool.checkedin()),
            # SQLAlchemy counts it negative until the pool has opened `size` connections.
            "db_pool_overflow": (
                "Connections open beyond the pool's size.",
                max(pool.overflow(), 0),
            ),
        }
        for name, (documentation, value) in figures.items():
            yield GaugeMetricFamily(name, documentation, value=value)


pool_collector = PoolCollector()
if MULTIPROC_ENV not in os.environ:
    REGISTRY.register(pool_collector)


def bind_database(database: Database | None) -> None:
    """The database whose pool `/metrics` reports (the running app's)."""
    pool_collector.database = database


class RouteTemplates:
    """The whole template of each route of an app (`/api/v1/users/{user_id}`), by route.

    FastAPI includes a router without copying its routes: the route a request matched
    (`scope["route"]`) knows only its path inside its router (`/{user_id}`).
    `iter_route_contexts` (FastAPI's public walk of included routers) gives each route's full
    template once; a request then costs a dictionary lookup."""

    def __init__(self) -> None:
        self._by_route: dict[int, str] = {}
        self._app: object = None

    def __call__(self, scope: Scope) -> str:
        """The template of the route that answered (`UNMATCHED_ROUTE` when none did)."""
        route = scope.get("route")
        if route is None:
            return UNMATCHED_ROUTE
        if scope.get("app") is not self._app:  # first request, or another app (tests)
            self._read(scope["app"])
        template = self._by_route.get(id(route)) or getattr(route, "path", None)
        return str(template) if template else UNMATCHED_ROUTE

    def _read(self, app: Starlette) -> None:
        self._by_route = {
            id(context.original_route): context.path_format or ""
            for context in iter_route_contexts(app.routes)
        }
        self._app = app


def _status_class(status: int) -> str:
    return f"{status // 100}xx"


class MetricsMiddleware:
    """Pure ASGI: counts and times each HTTP request under its route's template
    (`/api/v1/users/{user_id}`, never the raw path), and how many are in flight."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.route_template = RouteTemplates()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_recording_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        HTTP_IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_recording_status)
        finally:
            HTTP_IN_FLIGHT.dec()
            template = self.route_template(scope)
            method = scope["method"]
            # Positional label values, in the order the metrics declare them.
            HTTP_REQUESTS.labels(method, template, _status_class(status)).inc()
            HTTP_DURATION.labels(method, template).observe(time.perf_counter() - started)


def _registry() -> CollectorRegistry:
    if MULTIPROC_ENV not in os.environ:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def exposition(registry: CollectorRegistry | None = None) -> bytes:
    """The metrics in Prometheus's text format."""
    return generate_latest(registry or _registry())


def _authorize(request: Request) -> None:
    token = request.app.state.settings.metrics_token
    if not token:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(given.encode(), token.encode()):
        raise Unauthorized("A valid bearer token (METRICS_TOKEN) is required.")


router = APIRouter(include_in_schema=False)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus's scrape target: not under /api, not in the OpenAPI document."""
    _authorize(request)
    for hook in scrape_hooks:
        try:
            await hook(request.app.state.database)
        except (SQLAlchemyError, OSError) as error:
            # The database is down: its gauges keep their last value, the rest still report.
            log.warning("metrics_scrape_hook_failed", error=type(error).__name__)
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)


@contextmanager
def multiprocess_directory() -> Iterator[str]:
    """PROMETHEUS_MULTIPROC_DIR for the processes this one is about to start: the one set, or
    a fresh temporary directory (removed afterwards), so no figure of an earlier run lingers.

    Only processes that import prometheus-client after this (spawned ones: uvicorn's workers,
    `app worker`'s) write their figures there; a forked child keeps this process's in-memory
    values."""
    with ExitStack() as stack:
        if MULTIPROC_ENV not in os.environ:
            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="app-metrics-"))
            stack.callback(os.environ.pop, MULTIPROC_ENV, None)
            os.environ[MULTIPROC_ENV] = directory
        yield os.environ[MULTIPROC_ENV]


def _process_collector(pid: int) -> ProcessCollector:
    return ProcessCollector(pid=lambda: pid, registry=None)


class ProcessTreeCollector(Collector):
    """This process's `process_*` figures with its child processes' added to the ones that add
    up (CPU time, memory, open files): prometheus-client's multiprocess mode exports none for
    the processes that share PROMETHEUS_MULTIPROC_DIR, and the task workers do the work."""

    ADDED_UP = frozenset(
        {
            "process_cpu_seconds",
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_open_fds",
        }
    )

    def collect(self) -> Iterable[Metric]:
        own = {family.name: family for family in ProcessCollector(registry=None).collect()}
        totals = {name: own[name].samples[0].value for name in self.ADDED_UP if name in own}
        # A child gone since it was listed reads as nothing (ProcessCollector skips it).
        children = [child.pid for child in multiprocessing.active_children() if child.pid]
        if "process_cpu_seconds" in totals:
            # Children already ended and reaped (a replaced worker): their CPU time stays counted.
            ended = os.times()
            totals["process_cpu_seconds"] += ended.children_user + ended.children_system
        for pid in children:
            for family in _process_collector(pid).collect():
                if family.name in totals:
                    totals[family.name] += family.samples[0].value
        for name, family in own.items():
            if name not in totals:
                yield family
            elif family.type == "counter":
                yield CounterMetricFamily(name, family.documentation, value=totals[name])
            else:
                yield GaugeMetricFamily(name, family.documentation, value=totals[name])


@contextmanager
def worker_metrics_server(port: int, addr: str = "0.0.0.0") -> Iterator[int]:  # noqa: S104
    """Serve the summed metrics of the task worker processes this process is about to start
    (in a `multiprocess_directory`), on `port` (0: any free one; yielded), while the block
    runs, with the CPU and memory of this process and its children. The worker processes
    must be spawned, not forked."""
    with multiprocess_directory(), ExitStack() as stack:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        registry.register(ProcessTreeCollector())
        server, thread = start_http_server(port, addr=addr, registry=registry)
        stack.callback(thread.join, 5)
        stack.callback(server.server_close)
        stack.callback(server.shutdown)
        yield int(server.server_port)


__all__: list[str] = [
    "HTTP_DURATION",
    "HTTP_IN_FLIGHT",
    "HTTP_REQUESTS",
    "MAIL_FAILED",
    "MAIL_SENT",
    "OUTBOX_ENTRIES",
    "RATE_LIMIT_REFUSALS",
    "REDIS_ERRORS",
    "TASKS_ENQUEUED",
    "TASKS_FAILED",
    "TASKS_RETRIED",
    "TASKS_STARTED",
    "TASKS_SUCCEEDED",
    "TASK_DURATION",
    "MetricsMiddleware",
    "ProcessTreeCollector",
    "RouteTemplates",
    "ScrapeHook",
    "bind_database",
    "exposition",
    "multiprocess_directory",
    "router",
    "scrape_hooks",
    "worker_metrics_server",
]
