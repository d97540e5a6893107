"""FastAPI's built-in OpenTelemetry instrumentation is on when traces are configured (OTEL_*
variables naming an exporter, or TELEMETRY_ENABLED for a provider of the deployment's), and
off otherwise."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from opentelemetry import trace

from app.main import create_app
from tests.conftest import Services, make_settings


class RecordingTracer(trace.NoOpTracer):
    def __init__(self) -> None:
        self.spans: list[str] = []

    def start_span(self, name: str, *args: Any, **kwargs: Any) -> trace.Span:
        self.spans.append(name)
        return super().start_span(name, *args, **kwargs)


class RecordingTracerProvider(trace.TracerProvider):
    """A configured provider, as an OpenTelemetry SDK would install, that remembers spans."""

    def __init__(self) -> None:
        self.tracer = RecordingTracer()

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return self.tracer


@pytest.mark.parametrize(
    ("enabled", "exporter", "traced"),
    [(True, None, True), (False, "console", True), (False, None, False), (False, "none", False)],
)
async def test_requests_are_traced_only_when_traces_are_configured(
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
    enabled: bool,
    exporter: str | None,
    traced: bool,
) -> None:
    provider = RecordingTracerProvider()
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    if exporter is None:
        monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    else:
        monkeypatch.setenv("OTEL_TRACES_EXPORTER", exporter)
    app = create_app(make_settings(services, telemetry_enabled=enabled))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/health/live")).status_code == 200
    assert provider.tracer.spans == (["GET"] if traced else [])
