"""The transactional outbox: work a use case queues is written in its own transaction.

    enqueue(session, send_receipt, order.id)   # a row in outbox_entries, with the order
    await session.commit()                      # both, or neither

A relay (`OutboxRelay`, run by every `app worker`) sends committed entries to the queue; the
worker records each attempt's outcome on its entry (`OutboxMiddleware`): done, retried after a
backoff, or dead after its retry budget (`app outbox list|retry|discard`). Delivery is at least
once; a task that must act once per entry (mail) takes the parameter `once: RunOnce = None`.
Queued listeners and queued mail go through here; `.kiq()` still sends at once, outside any
transaction.
"""

from app.core.outbox.delivery import (
    OutboxDelivery,
    OutboxMiddleware,
    RunOnce,
    claim_delivery,
    outbox_middleware,
)
from app.core.outbox.enqueue import enqueue
from app.core.outbox.metrics import read_backlog
from app.core.outbox.models import OutboxEntry, OutboxStatus
from app.core.outbox.relay import OutboxRelay
from app.core.outbox.repository import OutboxRepository
from app.core.outbox.tasks import purge_outbox

__all__ = [
    "OutboxDelivery",
    "OutboxEntry",
    "OutboxMiddleware",
    "OutboxRelay",
    "OutboxRepository",
    "OutboxStatus",
    "RunOnce",
    "claim_delivery",
    "enqueue",
    "outbox_middleware",
    "purge_outbox",
    "read_backlog",
]
