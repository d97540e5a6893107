"""Error reports to Sentry, when SENTRY_DSN is set (nothing is sent otherwise).

Each event carries the request id (tag `request_id`, the one in `X-Request-ID` and the logs)
and the id of the signed-in account, and nothing secret: `scrub` removes credentials,
cookies, tokens and passwords wherever they appear in the event before it leaves the process.
Performance tracing stays with OpenTelemetry (app.core.tracing): Sentry gets errors only.
"""

from __future__ import annotations

import re
from typing import Any

from app.core.config import Settings
from app.core.request_context import current_request_id, current_user_id

FILTERED = "[Filtered]"
# Keys whose values are secrets, wherever they are (headers, cookies, bodies, extras, locals).
_SECRET_KEY = re.compile(
    r"authorization|cookie|passw|secret|token|api[-_]?key|session|csrf|credential|otp",
    re.IGNORECASE,
)
# Secrets in a query string: `?token=...&password=...`.
_SECRET_QUERY = re.compile(
    r"((?:[^&=]*(?:passw|secret|token|api[-_]?key|session|code)[^&=]*)=)[^&]*", re.IGNORECASE
)


def _scrub_value(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: FILTERED if _SECRET_KEY.search(str(key)) else _scrub_value(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        # Headers may come as [name, value] pairs.
        if len(value) == 2 and isinstance(value[0], str) and _SECRET_KEY.search(value[0]):
            return [value[0], FILTERED]
        return [_scrub_value(item) for item in value]
    return value


def scrub(event: dict[str, Any], hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """Sentry's `before_send`: drop secrets, add the request id and the account id."""
    request = event.get("request")
    if isinstance(request, dict):
        request.pop("cookies", None)
        query = request.get("query_string")
        if isinstance(query, str):
            request["query_string"] = _SECRET_QUERY.sub(rf"\1{FILTERED}", query)
        event["request"] = _scrub_value(request)
    for section in ("extra", "contexts", "breadcrumbs", "exception", "logentry"):
        if section in event:
            event[section] = _scrub_value(event[section])
    request_id = current_request_id()
    if request_id is not None:
        event.setdefault("tags", {})["request_id"] = request_id
    user_id = current_user_id()
    if user_id is not None:
        event["user"] = {"id": user_id}  # the id only: no email, no address
    return event


def sentry_options(settings: Settings) -> dict[str, Any] | None:
    """What `sentry_sdk.init` is given; None when SENTRY_DSN is not set."""
    if not settings.sentry_dsn:
        return None
    return {
        "dsn": settings.sentry_dsn,
        "environment": settings.app_env.value,
        "send_default_pii": False,
        "traces_sample_rate": None,
        "before_send": scrub,
        "include_local_variables": False,  # a frame's locals can hold anything
    }


def configure_sentry(settings: Settings) -> None:
    options = sentry_options(settings)
    if options is not None:
        import sentry_sdk  # here: a process without a DSN does not load it

        sentry_sdk.init(**options)


__all__ = ["FILTERED", "configure_sentry", "scrub", "sentry_options"]
