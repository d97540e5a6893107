"""OpenTelemetry traces: export set up from the standard OTEL_* variables, and the trace
carried from a request into the tasks it queues.

FastAPI 0.165 traces requests itself (`FastAPI(telemetry=...)`, TELEMETRY_ENABLED). This
module adds what FastAPI does not: a tracer provider exporting over OTLP when
OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set, for the API and
the worker alike (a worker starts the app's lifespan, not FastAPI's own); and a taskiq
middleware that writes the W3C `traceparent` into a task's labels (the outbox stores labels)
and continues that trace in the worker, so one trace shows the request and its tasks.
Nothing configured: no provider, no exporter, OpenTelemetry's no-op API.
"""

from __future__ import annotations

import os
from contextvars import Token
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from taskiq import NoResultError, TaskiqMessage, TaskiqMiddleware, TaskiqResult

# The W3C trace-context fields, carried as task labels of the same names.
TRACE_LABELS = ("traceparent", "tracestate")


def export_configured() -> bool:
    """Whether the environment names an OTLP endpoint for traces (and does not turn it off)."""
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def configure_tracing() -> None:
    """Install a tracer provider exporting over OTLP/HTTP, once per process, when the
    environment asks for it and nothing else installed one. The exporter, the service name
    and the sampler read their OTEL_* variables themselves."""
    if not export_configured():
        return
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return  # configured already (by this function, FastAPI or the deployment)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(resource=Resource.create())
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)


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


__all__ = ["TRACE_LABELS", "TracingMiddleware", "configure_tracing", "trace_labels"]
