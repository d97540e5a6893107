"""Events published on a SQLAlchemy session: queued listeners through the outbox, in the
session's transaction; in-process listeners handed to fastapi-events after commit.

A queued listener is an outbox entry written when the event is published: it commits with the
use case or not at all, and is retried until it succeeds (or is dead-lettered). An in-process
listener runs, in a request, once fastapi-events' ASGI middleware has sent the response;
outside a request (a task, the CLI) right after the commit (`await drain()` waits for them).
A rollback, or a session closed without commit, discards the events. A failing in-process
listener is logged and never reaches the publisher.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import structlog
from fastapi import FastAPI
from fastapi_events import in_req_res_cycle
from fastapi_events.dispatcher import dispatch
from fastapi_events.handlers.base import BaseEventHandler
from fastapi_events.middleware import EventHandlerASGIMiddleware
from pydantic import BaseModel, ConfigDict
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from app.core.outbox import enqueue
from app.core.queue import broker

log = structlog.get_logger("app.events")

EVENTS_MIDDLEWARE_ID = 0x5EE5  # one handler set shared by every app instance
_PENDING_KEY = "app.pending_events"

E = TypeVar("E", bound="BaseEvent")
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


class BaseEvent(BaseModel):
    """A fact that happened. Subclass it with the data listeners need (ids, not ORM objects)."""

    model_config = ConfigDict(frozen=True)
    __event_name__: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.__event_name__ = f"{cls.__module__}.{cls.__qualname__}"


@dataclass(frozen=True)
class Listener:
    name: str
    func: Callable[..., Awaitable[Any]]
    queued: bool
    task: Any = None  # the taskiq task of a queued listener


_registry: dict[type[BaseEvent], list[Listener]] = {}
_background: set[asyncio.Task[None]] = set()


def listener(event_type: type[E], *, queued: bool = False, **task_labels: Any) -> Callable[[F], F]:
    """Register `func(event)` for `event_type` (and its subclasses). `queued=True` makes it a
    task (extra labels such as `max_retries=5` go to the task)."""

    def decorator(func: F) -> F:
        name = f"{func.__module__}.{func.__qualname__}"
        task = None
        if queued:
            task = broker.task(task_name=f"listener:{name}", **task_labels)(func)
        entries = _registry.setdefault(event_type, [])
        if all(entry.name != name for entry in entries):
            entries.append(Listener(name=name, func=func, queued=queued, task=task))
        return func

    return decorator


def listeners_for(event_type: type[BaseEvent]) -> list[Listener]:
    found: list[Listener] = []
    for cls in event_type.__mro__:
        if isinstance(cls, type) and issubclass(cls, BaseEvent):
            found.extend(_registry.get(cls, ()))
    return found


async def _run_listener(entry: Listener, event: BaseEvent) -> None:
    try:
        await entry.func(event)
    except Exception:
        log.exception("listener_failed", listener=entry.name, event_name=event.__event_name__)


async def deliver(event: BaseEvent) -> None:
    """Run every in-process listener of `event`, concurrently; failures are only logged."""
    await asyncio.gather(
        *(_run_listener(entry, event) for entry in listeners_for(type(event)) if not entry.queued)
    )


class ListenerHandler(BaseEventHandler):
    """The fastapi-events handler that hands events to our listeners."""

    async def handle(self, event: tuple[Any, Any]) -> None:
        _, payload = event
        if isinstance(payload, BaseEvent):
            await deliver(payload)


def add_events_middleware(app: FastAPI) -> None:
    app.add_middleware(
        EventHandlerASGIMiddleware,
        handlers=[ListenerHandler()],
        middleware_id=EVENTS_MIDDLEWARE_ID,
    )


def publish(session: AsyncSession | Session, event: BaseEvent) -> None:
    """Attach `event` to the session's transaction: its queued listeners are written to the
    outbox now, its in-process listeners run after commit; a rollback drops both. Call it
    inside the use case, before `await session.commit()`."""
    listeners = listeners_for(type(event))
    for entry in listeners:
        if entry.queued:
            enqueue(session, entry.task, event.model_dump(mode="json"))
    if all(entry.queued for entry in listeners):
        return
    sync_session = session.sync_session if isinstance(session, AsyncSession) else session
    # The publisher's context: tells after-commit whether a request is in flight.
    pending = sync_session.info.setdefault(_PENDING_KEY, [])
    pending.append((event, contextvars.copy_context()))


def _dispatch_now(event: BaseEvent) -> None:
    if in_req_res_cycle.get():
        dispatch(
            event,
            validate_payload=False,
            payload_schema_dump=False,
            middleware_id=EVENTS_MIDDLEWARE_ID,
        )
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        log.error("event_dropped_no_loop", event_name=event.__event_name__)
        return
    task = loop.create_task(deliver(event))
    _background.add(task)
    task.add_done_callback(_background.discard)


@sa_event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    pending = session.info.pop(_PENDING_KEY, None)
    for published, context in pending or ():
        context.run(_dispatch_now, published)


@sa_event.listens_for(Session, "after_transaction_end")
def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    # Rolled back, or closed without commit: whatever is still pending never happened.
    if transaction.parent is None and not transaction.nested:
        session.info.pop(_PENDING_KEY, None)


async def drain() -> None:
    """Wait for listeners started outside a request (CLI commands, tasks, tests)."""
    while _background:
        await asyncio.gather(*_background, return_exceptions=True)
