"""A stand-in for a task worker process (spawned by a metrics test): it counts what its task
middleware would. Kept apart from the test module so the child imports little."""

import time
from multiprocessing.synchronize import Event

from app.core import metrics


def run_a_task() -> None:
    metrics.TASKS_SUCCEEDED.labels(task="demo.task").inc()
    metrics.TASK_DURATION.labels(task="demo.task").observe(0.2)


def work_then_hold(ready: Event, release: Event) -> None:
    """Take memory and CPU time as a busy worker does, then stay alive until released."""
    kept = bytearray(64 * 1024 * 1024)  # written, so it is resident
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        kept[int(time.process_time() * 1e6) % len(kept)] = 1
    ready.set()
    release.wait(30)
