"""The id of the request (or task) being handled, shared by logs, errors and queued work; and
the id of the account it acts for, once authenticated (error reports name it)."""

from __future__ import annotations

from contextvars import ContextVar

# The label that carries it with a queued task.
REQUEST_ID_LABEL = "request_id"

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


def current_request_id() -> str | None:
    return _request_id.get()


def set_request_id(value: str | None) -> object:
    return _request_id.set(value)


def reset_request_id(token: object) -> None:
    _request_id.reset(token)  # type: ignore[arg-type]


_user_id: ContextVar[str | None] = ContextVar("user_id", default=None)


def current_user_id() -> str | None:
    return _user_id.get()


def set_user_id(value: str | None) -> object:
    return _user_id.set(value)
