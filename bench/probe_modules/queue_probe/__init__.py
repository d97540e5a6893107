"""An endpoint that enqueues a bare task, as a feature module would (`.kiq()` from a route)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Response, status

from app.core.modules import ModuleSpec
from app.core.queue import broker
from bench.queue_probe import record_start


@broker.task(task_name="bench.queue_probe")
async def probe(enqueued_at: float) -> None:
    await record_start(enqueued_at)


router = APIRouter()


@router.post("", status_code=status.HTTP_202_ACCEPTED)
async def enqueue_probe() -> Response:
    await probe.kiq(time.time())
    return Response(status_code=status.HTTP_202_ACCEPTED)


module = ModuleSpec(name="queue_probe", prefix="queue-probe", router=router)
