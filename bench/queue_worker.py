"""`app worker` with the benchmark's probe module loaded: the same broker and worker arguments
(app/core/queue/worker.py and app/cli.py), one more module discovered.

    python -m bench.queue_worker
"""

from __future__ import annotations

from app.core.modules import DEFAULT_PACKAGES, discover_modules
from app.core.queue.worker import broker

discover_modules((*DEFAULT_PACKAGES, "bench.probe_modules"))

__all__ = ["broker"]


def main() -> None:
    from taskiq.cli.worker.args import WorkerArgs
    from taskiq.cli.worker.run import run_worker

    from app.core.config import get_settings

    status = run_worker(
        WorkerArgs(
            broker="bench.queue_worker:broker",
            modules=[],
            configure_logging=False,
            workers=1,
            max_async_tasks=100,
            wait_tasks_timeout=get_settings().queue_shutdown_timeout,
        )
    )
    raise SystemExit(status or 0)


if __name__ == "__main__":
    main()
