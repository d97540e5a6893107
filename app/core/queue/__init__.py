"""Background tasks on taskiq: Redis streams in production, in-process in tests.

A module declares tasks in its own `tasks.py`, found by the module registry:

    from app.core.queue import broker

    @broker.task(task_name="orders.send_receipt")
    async def send_receipt(order_id: int, cache: Annotated[CacheService, TaskiqDepends(get_cache)])
        ...

    await send_receipt.kiq(order_id=1)        # from a request, a listener or another task

Options as labels: `retry_on_error=False`, `max_retries=5`, `delay=10` (seconds before the first
retry), `schedule=[{"cron": "0 * * * *"}]`. Run `app worker` and `app scheduler`, as many of
each as you like.
"""

from taskiq import TaskiqDepends

from app.core.queue.broker import AppBroker, bind_app, broker
from app.core.queue.middleware import RequestIdMiddleware, RetryMiddleware
from app.core.queue.scheduler import scheduler, send_due_tasks
from app.core.request_context import REQUEST_ID_LABEL

__all__ = [
    "REQUEST_ID_LABEL",
    "AppBroker",
    "RequestIdMiddleware",
    "RetryMiddleware",
    "TaskiqDepends",
    "bind_app",
    "broker",
    "scheduler",
    "send_due_tasks",
]
