"""OpenTelemetry traces: export set up from the standard OTEL_* variables, and the trace
carried from a request into the tasks it queues.

FastAPI 0.165 traces requests itself (`FastAPI(telemetry=...)`). This module adds what FastAPI
does not: a tracer provider exporting where OTEL_TRACES_EXPORTER says (`otlp` once an
OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT is set, or `console`), for the API and the worker alike
(a worker starts the app's lifespan, not FastAPI's own); spans for SQL statements, Redis
commands and outgoing HTTP (OpenTelemetry's contrib instrumentations); and a taskiq
middleware that writes the W3C `traceparent` into a task's labels (the outbox stores labels)
and continues that trace in the worker, so one trace shows the request, its tasks and their
mail. Nothing configured: no provider, no exporter, no instrumentation, OpenTelemetry's no-op
API.
"""

from __future__ import annotations

import os
from contextvars import Token
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from sqlalchemy.ext.asyncio import AsyncEngine
from taskiq import NoResultError, TaskiqMessage, TaskiqMiddleware, TaskiqResult

# The W3C trace-context fields, carried as task labels of the same names.
TRACE_LABELS = ("traceparent", "tracestate")


def _traces_exporter_name() -> str:
    """OTEL_TRACES_EXPORTER's choice: `otlp` (the specification's default), `console` or
    `none`; OTEL_SDK_DISABLED=true is `none`."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return "none"
    return os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"


def export_configured() -> bool:
    """Whether the environment asks for traces: the console exporter, or OTLP with an endpoint
    named. The specification's OTLP default (localhost:4318) alone is not enough: an app
    nobody configured sends nothing and pays nothing."""
    name = _traces_exporter_name()
    if name == "console":
        return True
    return name == "otlp" and bool(
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def _exporter() -> SpanExporter:
    if _traces_exporter_name() == "console":
        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # reads its OTEL_EXPORTER_OTLP_* variables itself


def configure_tracing() -> None:
    """When the environment asks for traces: install a tracer provider with the configured
    exporter (unless the deployment installed one), and trace Redis commands and outgoing HTTP.
    The service name, resource and sampler read their OTEL_* variables themselves."""
    if not export_configured():
        return
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        provider = TracerProvider(resource=Resource.create())
        provider.add_span_processor(BatchSpanProcessor(_exporter()))
        trace.set_tracer_provider(provider)
    for instrumentor in (RedisInstrumentor(), HTTPXClientInstrumentor()):
        if not instrumentor.is_instrumented_by_opentelemetry:  # once per process
            instrumentor.instrument()


def trace_database(engine: AsyncEngine) -> None:
    """A span for every SQL statement `engine` runs, when traces are exported."""
    if not export_configured():
        return
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    # The instrumentor listens to the engine's events (an async engine's live on its
    # sync_engine). Its metadata stops at SQLAlchemy 2.0, but those events are the same in 2.1:
    # the dependency check is skipped, and a test shows the statements' spans.
    SQLAlchemyInstrumentor().instrument(engine=engine.sync_engine, skip_dep_check=True)


def trace_labels() -> dict[str, str]:
    """The current trace context as task labels (empty outside any trace)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return {name: carrier[name] for name in TRACE_LABELS if name in carrier}


class TracingMiddleware(TaskiqMiddleware):
    """A task sent from inside a trace carries it (`traceparent` label); the worker runs the
    task in a span of that trace, a child of the span that queued it."""

    def __init__(self) -> None:
        super().__init__()
        self._spans: dict[str, tuple[trace.Span, Token[context.Context]]] = {}

    def pre_send(self, message: TaskiqMessage) -> TaskiqMessage:
        for name, value in trace_labels().items():
            message.labels.setdefault(name, value)
        return message

    def pre_execute(self, message: TaskiqMessage) -> TaskiqMessage:
        labels = message.labels
        carrier = {name: str(labels[name]) for name in TRACE_LABELS if name in labels}
        parent = propagate.extract(carrier)
        span = trace.get_tracer("app.queue").start_span(
            f"task {message.task_name}",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes={"messaging.system": "taskiq", "messaging.message.id": message.task_id},
        )
        # The task runs in its own asyncio task, after this hook, in this context.
        token = context.attach(trace.set_span_in_context(span, parent))
        self._spans[message.task_id] = (span, token)
        return message

    def on_error(
        self, message: TaskiqMessage, result: TaskiqResult[Any], exception: BaseException
    ) -> None:
        found = self._spans.get(message.task_id)
        if found is not None and not isinstance(exception, NoResultError):
            span, _ = found
            span.record_exception(exception)
            span.set_status(trace.StatusCode.ERROR, type(exception).__name__)

    def post_execute(self, message: TaskiqMessage, result: TaskiqResult[Any]) -> None:
        found = self._spans.pop(message.task_id, None)
        if found is not None:
            span, token = found
            span.end()
            context.detach(token)


__all__ = [
    "TRACE_LABELS",
    "TracingMiddleware",
    "configure_tracing",
    "export_configured",
    "trace_database",
    "trace_labels",
]
