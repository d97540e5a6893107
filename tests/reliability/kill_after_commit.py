"""`app serve` that dies (SIGKILL) the moment a transaction that wrote outbox entries has
committed: before the response, before any after-commit work, before anything is handed to
the queue. Run as `python -m tests.reliability.kill_after_commit` with the app's environment."""

from __future__ import annotations

import os
import signal
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from app.core.outbox import OutboxEntry
from tests.reliability.serve import serve

_WROTE_OUTBOX = "tests.wrote_outbox"


@event.listens_for(Session, "before_flush")
def _note_outbox_entries(session: Session, context: Any, instances: Any) -> None:
    if any(isinstance(added, OutboxEntry) for added in session.new):
        session.info[_WROTE_OUTBOX] = True


@event.listens_for(Session, "after_commit")
def _die(session: Session) -> None:
    if session.info.pop(_WROTE_OUTBOX, False):
        os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    serve("app.main:create_app")
