"""A stand-in for a task worker process (spawned by a metrics test): it counts what its task
middleware would. Kept apart from the test module so the child imports little."""

from app.core import metrics


def run_a_task() -> None:
    metrics.TASKS_SUCCEEDED.labels(task="demo.task").inc()
    metrics.TASK_DURATION.labels(task="demo.task").observe(0.2)
