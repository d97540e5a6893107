"""structlog set-up, the request-id middleware and the access log. Lines carry the request id
and, inside an OpenTelemetry span, its trace and span ids.

structlog's standard library recipe: structlog events and the standard-library records of
libraries go through one `logging` handler whose `ProcessorFormatter` renders them, as console
lines in development and one JSON object per line in production.
"""

from __future__ import annotations

import logging
import re
import secrets
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import structlog
from opentelemetry import trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from structlog.typing import EventDict, Processor

from app.core.errors import problem_response
from app.core.request_context import current_request_id, reset_request_id, set_request_id

REQUEST_ID_HEADER = b"x-request-id"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{8,128}$")

access_log = structlog.get_logger("app.access")
error_log = structlog.get_logger("app.errors")


def add_request_id(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """The id of the request (or task) being handled, on every line written meanwhile."""
    request_id = current_request_id()
    if request_id is not None:
        event_dict.setdefault("request_id", request_id)
    return event_dict


def add_trace_ids(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """The OpenTelemetry trace and span being recorded, on every line written inside them,
    as hex strings a tracing backend can search for."""
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        event_dict.setdefault("trace_id", trace.format_trace_id(span_context.trace_id))
        event_dict.setdefault("span_id", trace.format_span_id(span_context.span_id))
    return event_dict


def _orjson_dumps(value: Any, default: Any = None) -> str:
    return orjson.dumps(value, default=default).decode()


def _renderer(json_logs: bool) -> Processor:
    if json_logs:
        return structlog.processors.JSONRenderer(serializer=_orjson_dumps)
    # Plain tracebacks: rich's (the default when rich is installed) are slow, hold the event
    # loop meanwhile, and print every frame's locals, secrets included.
    return structlog.dev.ConsoleRenderer(
        colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
    )


def configure_logging(*, level: str = "INFO", json_logs: bool = False) -> None:
    """Route structlog and standard-library logging to stderr through one renderer. Safe to
    call again (each app, a test, a CLI command): loggers made earlier follow the new set-up."""
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        add_request_id,
        add_trace_ids,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if json_logs:
        shared.append(structlog.processors.format_exc_info)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _renderer(json_logs),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's own access log would duplicate ours.
    logging.getLogger("uvicorn.access").handlers.clear()
    logging.getLogger("uvicorn.access").propagate = False
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            candidate = value.decode("latin-1")
            return candidate if _VALID_REQUEST_ID.match(candidate) else None
    return None


class RequestContextMiddleware:
    """Pure ASGI: assigns the request id, returns it, and writes one access-log line per request.

    It is also the last line of defence: an unhandled exception is logged with its traceback
    and answered with a 500 problem that names the request id and nothing internal. Every
    response, that one included, also carries `response_headers` (the security headers): one
    layer rather than a second middleware wrapping `send` again.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        access_log_enabled: bool = True,
        response_headers: Sequence[tuple[bytes, bytes]] = (),
        page_headers: Mapping[str, Sequence[tuple[bytes, bytes]]] | None = None,
        prefix_headers: Mapping[str, Sequence[tuple[bytes, bytes]]] | None = None,
    ) -> None:
        self.app = app
        self.access_log_enabled = access_log_enabled
        self.response_headers = tuple(response_headers)
        # Paths whose responses carry headers of their own instead (the docs page's CSP).
        self.page_headers = {path: tuple(headers) for path, headers in (page_headers or {}).items()}
        # ... and paths under these prefixes (the admin panel's).
        self.prefix_headers = [(prefix, tuple(headers))
                               for prefix, headers in (prefix_headers or {}).items()]  # fmt: skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = _incoming_request_id(scope) or secrets.token_hex(16)
        response_headers = self.page_headers.get(scope["path"], self.response_headers)
        for prefix, headers in self.prefix_headers:
            if scope["path"].startswith(prefix):
                response_headers = headers
        token = set_request_id(request_id)
        header_value = request_id.encode("latin-1")
        status_code = 500
        response_started = False
        started = time.perf_counter()

        async def send_with_request_id(message: Message) -> None:
            nonlocal status_code, response_started
            if message["type"] == "http.response.start":
                status_code = message["status"]
                response_started = True
                message["headers"] = [
                    *message.get("headers", ()),
                    *response_headers,
                    (REQUEST_ID_HEADER, header_value),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_request_id)
        except Exception as error:
            error_log.exception("unhandled_exception", path=scope["path"], exc_info=error)
            if response_started:
                raise
            response = problem_response(
                500,
                detail="An unexpected error occurred. Quote the request id when reporting it.",
                instance=scope["path"],
            )
            await response(scope, receive, send_with_request_id)
        finally:
            if self.access_log_enabled:
                access_log.info(
                    "request",
                    method=scope["method"],
                    path=scope["path"],
                    status=status_code,
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                )
            reset_request_id(token)
