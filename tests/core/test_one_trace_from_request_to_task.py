"""One trace from a request to the task it queued (through the outbox), with OpenTelemetry's
SDK recording spans in memory; log lines written meanwhile name the trace."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from asgi_lifespan import LifespanManager
from opentelemetry import trace
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app.core import tracing
from app.core.logging import configure_logging
from app.main import create_app
from tests.conftest import MailOutbox, Services, make_settings
from tests.factories.users import DEFAULT_PASSWORD
from tests.support import http_client, queued_work_done

LISTENER = "listener:app.modules.auth.listeners.mail_verification_link"


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Traces asked for by the environment, as in production, recorded by an SDK provider
    keeping finished spans in memory (it stands where `configure_tracing` would put one)."""
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    yield exporter
    # The instrumentations patch libraries process-wide: undo them for the next tests.
    for instrumentor in (RedisInstrumentor(), HTTPXClientInstrumentor(), SQLAlchemyInstrumentor()):
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
    provider.shutdown()


def _named(spans: InMemorySpanExporter, name: str) -> ReadableSpan:
    [span] = [span for span in spans.get_finished_spans() if span.name == name]
    return span


async def test_a_queued_task_continues_the_trace_of_the_request_that_queued_it(
    services: Services,
    spans: InMemorySpanExporter,
    mail_outbox: MailOutbox,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = make_settings(services, log_level="INFO", log_format="json")
    app = create_app(settings)
    try:
        async with LifespanManager(app), http_client(app) as client:
            response = await client.post(
                "/api/v1/auth/register",
                json={
                    "email": "traced@example.com",
                    "username": "traced",
                    "password": DEFAULT_PASSWORD,
                },
            )
            assert response.status_code == 202
            await mail_outbox.wait()
            await queued_work_done(app)
            assert (await client.get("/metrics")).status_code == 200
    finally:
        configure_logging(level="WARNING", json_logs=False)
    logged = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]

    request = _named(spans, "POST /api/v1/auth/register")
    task = _named(spans, f"task {LISTENER}")
    assert request.context is not None
    assert task.context is not None
    assert task.context.trace_id == request.context.trace_id
    assert task.parent is not None
    assert task.parent.span_id in {
        span.context.span_id
        for span in spans.get_finished_spans()
        if span.context is not None and span.context.trace_id == request.context.trace_id
    }
    assert task.kind is trace.SpanKind.CONSUMER
    # The task's mail is a span under the task's.
    mail = _named(spans, "mail send")
    assert mail.parent is not None
    assert mail.parent.span_id == task.context.span_id
    assert mail.kind is trace.SpanKind.CLIENT

    # The request's SQL statements and Redis commands are spans of its trace; outgoing HTTP
    # (httpx) is traced from here on too.
    in_request = [
        dict(span.attributes or {})
        for span in spans.get_finished_spans()
        if span.context is not None and span.context.trace_id == request.context.trace_id
    ]
    assert any(found.get("db.system") == "postgresql" for found in in_request)
    assert any(found.get("db.system") == "redis" for found in in_request)
    assert HTTPXClientInstrumentor().is_instrumented_by_opentelemetry

    # Log lines carry the trace: the request's access-log line, and the task's own lines.
    trace_id = trace.format_trace_id(request.context.trace_id)
    [access] = [
        line
        for line in logged
        if line["event"] == "request" and line["path"] == "/api/v1/auth/register"
    ]
    assert access["trace_id"] == trace_id
    assert access["request_id"] == response.headers["x-request-id"]
    [mail_sent] = [line for line in logged if line["event"] == "mail_sent"]
    assert mail_sent["trace_id"] == trace_id
    assert mail_sent["span_id"] == trace.format_span_id(task.context.span_id)
    # Scrapes are not traced.
    assert not [span for span in spans.get_finished_spans() if "/metrics" in span.name]


async def test_outside_a_trace_a_task_carries_no_trace_labels() -> None:
    assert tracing.trace_labels() == {}


def test_export_is_configured_by_an_otlp_endpoint_or_the_console_exporter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    assert not tracing.export_configured()
    tracing.configure_tracing()  # nothing configured: nothing installed
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    assert tracing.export_configured()
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert not tracing.export_configured()
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    assert tracing.export_configured()
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert not tracing.export_configured()
