"""Entry point of `app worker` / `app scheduler`: the broker with every module's tasks loaded."""

from __future__ import annotations

from app.core.modules import discover_modules
from app.core.queue.broker import broker
from app.core.queue.scheduler import scheduler

discover_modules()

__all__ = ["broker", "scheduler"]
