"""`enqueue`: a task call written to the outbox in the caller's transaction."""

from __future__ import annotations

from typing import Any

from pydantic_core import to_jsonable_python
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from taskiq import AsyncTaskiqDecoratedTask
from taskiq.kicker import AsyncKicker

from app.core.outbox.models import OutboxEntry
from app.core.request_context import REQUEST_ID_LABEL, current_request_id
from app.core.tracing import trace_labels

# Labels that describe the task's registration rather than one call of it.
_REGISTRATION_LABELS = frozenset({"types_of_exceptions", "schedule"})


def enqueue(
    session: AsyncSession | Session,
    task: AsyncTaskiqDecoratedTask[Any, Any] | AsyncKicker[Any, Any],
    /,
    *args: Any,
    **kwargs: Any,
) -> OutboxEntry:
    """Queue `task(*args, **kwargs)` as part of the session's transaction: a relay sends it to
    the queue once the transaction commits; a rollback takes it back with everything else.

        enqueue(session, send_receipt, order.id)
        enqueue(session, send_receipt.kicker().with_labels(max_retries=10), order.id)
        await session.commit()

    Arguments must be JSON values (Pydantic models are dumped). The request id and the trace of the
    current request travel with it, as with `.kiq()`."""
    kicker = task if isinstance(task, AsyncKicker) else task.kicker()
    labels = {
        name: value for name, value in kicker.labels.items() if name not in _REGISTRATION_LABELS
    }
    request_id = current_request_id()
    if request_id is not None:
        labels.setdefault(REQUEST_ID_LABEL, request_id)
    for name, value in trace_labels().items():  # the task continues the request's trace
        labels.setdefault(name, value)
    entry = OutboxEntry(
        task_name=kicker.task_name,
        args=to_jsonable_python(list(args)),
        kwargs=to_jsonable_python(kwargs),
        labels=to_jsonable_python(labels),
    )
    session.add(entry)
    return entry
