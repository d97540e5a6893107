"""Typed application errors and their RFC 9457 `application/problem+json` rendering."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any, ClassVar

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from psycopg import OperationalError as DriverOperationalError
from pydantic import BaseModel
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DataError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from app.core.request_context import current_request_id

PROBLEM_JSON = "application/problem+json"
PROBLEM_DESCRIPTIONS = {
    400: "Bad request",
    401: "Missing, invalid or expired credentials",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict with an existing resource",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Invalid input",
    429: "Too many requests",
    503: "A backing service is unavailable",
}
log = structlog.get_logger("app.errors")


class AppError(Exception):
    """Base for errors a use case raises on purpose; each maps to one HTTP status."""

    status_code: ClassVar[int] = 400
    title: ClassVar[str] = "Bad Request"
    type_: ClassVar[str] = "about:blank"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: Sequence[Mapping[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = list(errors) if errors else None
        self.headers = dict(headers) if headers else None


class NotFound(AppError):
    status_code = 404
    title = "Not Found"


class Conflict(AppError):
    status_code = 409
    title = "Conflict"


class Forbidden(AppError):
    status_code = 403
    title = "Forbidden"


class Unauthorized(AppError):
    status_code = 401
    title = "Unauthorized"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(detail, **kwargs)


class ValidationFailed(AppError):
    status_code = 422
    title = "Validation Failed"

    @classmethod
    def at(
        cls, loc: Sequence[str], msg: str, *, detail: str | None = None, type: str = "value_error"
    ) -> ValidationFailed:
        """A 422 for one input, its `errors` entry in the shape of FastAPI's request
        validation errors (`loc` like ("body", "password"))."""
        return cls(detail or msg, errors=[{"loc": list(loc), "msg": msg, "type": type}])


class PayloadTooLarge(AppError):
    status_code = 413
    title = "Payload Too Large"


class UnsupportedMediaType(AppError):
    status_code = 415
    title = "Unsupported Media Type"


class RateLimited(AppError):
    status_code = 429
    title = "Too Many Requests"


class ServiceUnavailable(AppError):
    status_code = 503
    title = "Service Unavailable"


class ProblemDetail(BaseModel):
    """An RFC 9457 problem, as every error response is shaped (application/problem+json)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = None
    request_id: str | None = None
    errors: list[dict[str, Any]] | None = None


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` documenting the given error statuses as problem+json."""
    return {
        code: {
            "model": ProblemDetail,
            "description": PROBLEM_DESCRIPTIONS.get(code, "Error"),
            "content": {PROBLEM_JSON: {}},
        }
        for code in codes
    }


def document_problems(openapi: dict[str, Any]) -> dict[str, Any]:
    """Finish an OpenAPI document so it says what the app really answers:

    - a problem response's schema is under `application/problem+json` only (FastAPI files a
      response `model` under `application/json`, which the app never sends for an error);
    - FastAPI's default 422 (`HTTPValidationError`) is the problem the app really sends;
    - every operation with a request body may answer 400 (unparsable) and 413 (too large).
    """
    ref = {"$ref": "#/components/schemas/ProblemDetail"}
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault(
        "ProblemDetail",
        ProblemDetail.model_json_schema(ref_template="#/components/schemas/{model}"),
    )
    for path_item in openapi.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses: dict[str, Any] = operation["responses"]
            for code, response in responses.items():
                content = response.get("content", {})
                default_422 = "HTTPValidationError" in str(content.get("application/json", ""))
                if PROBLEM_JSON in content or (code == "422" and default_422):
                    schema = content.pop("application/json", {}).get("schema", ref)
                    content[PROBLEM_JSON] = {"schema": ref if default_422 else schema}
            if "requestBody" in operation:
                for status in (400, 413):
                    responses.setdefault(
                        str(status),
                        {
                            "description": PROBLEM_DESCRIPTIONS[status],
                            "content": {PROBLEM_JSON: {"schema": ref}},
                        },
                    )
    return openapi


def install_problem_docs(app: FastAPI) -> None:
    """Make `app.openapi()` (and /openapi.json) run `document_problems` once."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_problems(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def problem_response(
    status: int,
    *,
    title: str | None = None,
    detail: str | None = None,
    errors: Sequence[Mapping[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
    instance: str | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or _status_phrase(status),
        "status": status,
        "detail": detail or title or _status_phrase(status),
    }
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    request_id = current_request_id()
    if request_id:
        body["request_id"] = request_id
    return Response(
        orjson.dumps(body, default=str),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=dict(headers) if headers else None,
    )


def _status_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


async def _app_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    if exc.status_code >= 500:
        log.warning("service_unavailable", detail=exc.detail)
    return problem_response(
        exc.status_code,
        title=exc.title,
        detail=exc.detail,
        errors=exc.errors,
        headers=exc.headers,
        instance=request.url.path,
    )


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else None
    return problem_response(
        exc.status_code,
        detail=detail,
        headers=exc.headers,
        instance=request.url.path,
    )


def _clean_validation_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    cleaned = []
    for error in errors:
        cleaned.append(
            {
                "loc": [str(part) for part in error.get("loc", ())],
                "msg": str(error.get("msg", "")),
                "type": str(error.get("type", "")),
            }
        )
    return cleaned


async def _request_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return problem_response(
        422,
        title="Validation Failed",
        detail="The request is not valid.",
        errors=_clean_validation_errors(exc.errors()),
        instance=request.url.path,
    )


async def _dependency_down(request: Request, exc: Exception) -> Response:
    # The database or Redis is unreachable or saturated: a retryable 503, not a 500.
    log.warning("dependency_unavailable", path=request.url.path, error=type(exc).__name__)
    return problem_response(
        503,
        detail="A backing service is unavailable. Retry shortly.",
        headers={"Retry-After": "5"},
        instance=request.url.path,
    )


FOREIGN_KEY_VIOLATION = "23503"


async def _integrity_error(request: Request, exc: Exception) -> Response:
    # A constraint the service did not check first (a race, a missing pre-check): the client's
    # data conflicts with what is stored. The transaction is rolled back with the session.
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
    log.info("integrity_error", path=request.url.path, sqlstate=sqlstate)
    if sqlstate == FOREIGN_KEY_VIOLATION:
        return problem_response(
            422,
            title="Validation Failed",
            detail="The request references a record that does not exist.",
            instance=request.url.path,
        )
    return problem_response(
        409, detail="The request conflicts with existing data.", instance=request.url.path
    )


async def _stale_data(request: Request, exc: Exception) -> Response:
    # Optimistic locking (a mapper's `version_id_col`): the row changed since this request read
    # it. Nothing of this request was written; the client re-reads and retries.
    log.info("stale_data", path=request.url.path)
    return problem_response(
        409,
        detail="The resource was changed by another request; reload it and try again.",
        instance=request.url.path,
    )


async def _data_error(request: Request, exc: Exception) -> Response:
    # A value the database refuses (out of range, NUL byte...) that validation let through.
    log.info("data_error", path=request.url.path, error=type(exc.__cause__).__name__)
    return problem_response(
        422,
        title="Validation Failed",
        detail="A value is out of the range the database accepts.",
        instance=request.url.path,
    )


def install_error_handlers(app: FastAPI) -> None:
    """Typed errors and framework errors become problems; unhandled ones are answered by
    `RequestContextMiddleware`, which still knows the request id."""
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(IntegrityError, _integrity_error)
    app.add_exception_handler(DataError, _data_error)
    app.add_exception_handler(StaleDataError, _stale_data)
    for error_class in (
        OperationalError,
        InterfaceError,
        PoolTimeoutError,
        DriverOperationalError,  # the driver's own, should one escape SQLAlchemy's wrapping
        RedisConnectionError,
        RedisTimeoutError,
    ):
        app.add_exception_handler(error_class, _dependency_down)
