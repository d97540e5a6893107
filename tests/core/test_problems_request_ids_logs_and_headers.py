"""Problem responses, request ids, access log, security headers, body limits and CORS."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from asgi_lifespan import LifespanManager
from fastapi import APIRouter, FastAPI, HTTPException
from httpx import AsyncClient
from pydantic import BaseModel

from app.core import errors
from app.core.logging import configure_logging
from app.main import create_app
from tests.conftest import Services, make_settings
from tests.support import http_client

boom = APIRouter()


class Payload(BaseModel):
    name: str
    size: int


@boom.get("/app-error/{kind}")
async def raise_app_error(kind: str) -> None:
    error_class: type[errors.AppError] = getattr(errors, kind)
    raise error_class(f"{kind} happened")


@boom.get("/http-error")
async def raise_http_error() -> None:
    raise HTTPException(status_code=418, detail="I'm a teapot")


@boom.get("/crash")
async def crash() -> None:
    raise RuntimeError("secret internal detail: password=hunter2")


@boom.post("/echo")
async def echo(payload: Payload) -> Payload:
    return payload


@pytest.fixture(scope="module")
async def error_app(services: Services) -> AsyncIterator[FastAPI]:
    app = create_app(
        make_settings(services, max_body_bytes=2048, cors_origins=["https://ok.example"])
    )
    app.include_router(boom, prefix="/test")
    async with LifespanManager(app):
        yield app


@pytest.fixture
async def http(error_app: FastAPI) -> AsyncIterator[AsyncClient]:
    async with http_client(error_app) as client:
        yield client


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        ("NotFound", 404),
        ("Conflict", 409),
        ("Forbidden", 403),
        ("Unauthorized", 401),
        ("ValidationFailed", 422),
        ("RateLimited", 429),
        ("ServiceUnavailable", 503),
        ("PayloadTooLarge", 413),
    ],
)
async def test_app_errors_become_problem_json(http: AsyncClient, kind: str, status: int) -> None:
    response = await http.get(f"/test/app-error/{kind}", headers={"X-Request-ID": "req-12345678"})
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert body["detail"] == f"{kind} happened"
    assert body["title"] == getattr(errors, kind).title
    assert body["request_id"] == "req-12345678"
    assert body["instance"] == f"/test/app-error/{kind}"
    if kind == "Unauthorized":
        assert response.headers["www-authenticate"] == "Bearer"


async def test_http_exception_and_unknown_route_are_problems(http: AsyncClient) -> None:
    teapot = await http.get("/test/http-error")
    assert teapot.status_code == 418
    assert teapot.json()["detail"] == "I'm a teapot"
    missing = await http.get("/nowhere")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    wrong_method = await http.delete("/health/live")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["status"] == 405


async def test_request_validation_lists_errors(http: AsyncClient) -> None:
    response = await http.post("/test/echo", json={"name": "x", "size": "big"})
    assert response.status_code == 422
    body = response.json()
    assert body["errors"][0]["loc"] == ["body", "size"]
    assert body["request_id"] == response.headers["x-request-id"]


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"name": "x", "size": ', "application/json"),
        (b"name=x&size=1", "application/x-www-form-urlencoded"),
        (b"\xff\xfe\x00garbage", "application/json"),
        (b"[]", "application/json"),
    ],
)
async def test_malformed_bodies_are_4xx(
    http: AsyncClient, content: bytes, content_type: str
) -> None:
    response = await http.post(
        "/test/echo", content=content, headers={"content-type": content_type}
    )
    assert 400 <= response.status_code < 500
    assert response.headers["content-type"] == "application/problem+json"


async def test_unhandled_error_is_a_500_without_internals(
    http: AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(level="INFO", json_logs=True)
    response = await http.get("/test/crash")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "hunter2" not in response.text
    assert "RuntimeError" not in response.text
    request_id = response.headers["x-request-id"]
    assert response.json()["request_id"] == request_id
    assert response.headers["x-content-type-options"] == "nosniff"
    logged = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    crash = next(line for line in logged if line["event"] == "unhandled_exception")
    assert crash["request_id"] == request_id
    assert "RuntimeError: secret internal detail" in crash["exception"]
    configure_logging(level="WARNING", json_logs=False)


async def test_request_id_is_accepted_generated_and_sanitised(http: AsyncClient) -> None:
    kept = await http.get("/health/ready", headers={"X-Request-ID": "abc-123_DEF.456"})
    assert kept.headers["x-request-id"] == "abc-123_DEF.456"
    generated = await http.get("/health/ready")
    assert len(generated.headers["x-request-id"]) == 32
    for bad in ("short", "has spaces in it", "x" * 200, "inject\\r\\nheader"):
        replaced = await http.get("/health/ready", headers={"X-Request-ID": bad})
        assert replaced.headers["x-request-id"] != bad
        assert len(replaced.headers["x-request-id"]) == 32


async def test_access_log_line_per_request(
    http: AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(level="INFO", json_logs=True)
    response = await http.get("/health/ready", headers={"X-Request-ID": "trace-0000001"})
    await http.get("/health/live")  # liveness probes are not logged
    configure_logging(level="WARNING", json_logs=False)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    access = [line for line in lines if line.get("logger") == "app.access"]
    assert len(access) == 1
    line = access[0]
    assert response.status_code == 200
    assert line["method"] == "GET"
    assert line["path"] == "/health/ready"
    assert line["status"] == 200
    assert line["request_id"] == "trace-0000001"
    assert isinstance(line["duration_ms"], float)
    stamped = datetime.strptime(line["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - stamped).total_seconds()) < 5


async def test_console_logs_in_development(capsys: pytest.CaptureFixture[str]) -> None:
    import structlog

    configure_logging(level="INFO", json_logs=False)
    structlog.get_logger("app.test").info("hello_console", answer=42)
    configure_logging(level="WARNING", json_logs=False)
    output = capsys.readouterr().err
    assert "hello_console" in output
    assert "answer=42" in output
    assert not output.lstrip().startswith("{")


async def test_security_headers_on_every_response(http: AsyncClient) -> None:
    for path in ("/health/live", "/health/ready", "/nowhere", "/test/crash"):
        response = await http.get(path)
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"


async def test_oversized_body_is_413(http: AsyncClient) -> None:
    big = b'{"name": "' + b"x" * 4096 + b'", "size": 1}'
    response = await http.post(
        "/test/echo", content=big, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 1024

    streamed = await http.post(
        "/test/echo", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
    small = await http.post("/test/echo", json={"name": "ok", "size": 1})
    assert small.status_code == 200


async def test_cors_only_for_configured_origins(http: AsyncClient) -> None:
    preflight = {"Access-Control-Request-Method": "GET"}
    allowed = await http.options(
        "/health/live", headers={"Origin": "https://ok.example", **preflight}
    )
    assert allowed.headers["access-control-allow-origin"] == "https://ok.example"
    denied = await http.options(
        "/health/live", headers={"Origin": "https://evil.example", **preflight}
    )
    assert "access-control-allow-origin" not in denied.headers
    simple = await http.get("/health/live", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in simple.headers


async def test_cors_disabled_by_default(client: AsyncClient) -> None:
    response = await client.get("/health/live", headers={"Origin": "https://ok.example"})
    assert "access-control-allow-origin" not in response.headers


@boom.get("/db-error/{kind}")
async def raise_db_error(kind: str) -> None:
    from sqlalchemy.exc import DataError, IntegrityError, OperationalError

    error_class = {"integrity": IntegrityError, "data": DataError, "down": OperationalError}[kind]
    raise error_class("INSERT ...", {}, Exception("secret constraint name"))


@pytest.mark.parametrize(("kind", "status"), [("integrity", 409), ("data", 422), ("down", 503)])
async def test_database_errors_become_problems(http: AsyncClient, kind: str, status: int) -> None:
    response = await http.get(f"/test/db-error/{kind}")
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert "secret" not in response.text
    assert "INSERT" not in response.text
