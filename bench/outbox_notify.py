"""What the outbox's NOTIFY costs a committing transaction: the same outbox inserts with the
trigger on and off, from concurrent connections, while a relay LISTENs.

    python -m bench.outbox_notify                       # 8 connections x 500 commits, each way
    python -m bench.outbox_notify --connections 32 --commits 200

Each commit inserts one outbox entry (as a registration does) into the bench database
(DATABASE_URL, or the embedded server under .data/bench). PostgreSQL queues a notification
at commit under one lock for the whole cluster, so the figure to watch is commits per second
as connections grow. The two runs alternate (off, on, off, on) and the table is emptied
between them; the result is printed as JSON and written to
bench/results/outbox-notify-<connections>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

import psycopg

from app.core.outbox.models import NOTIFY_CHANNEL
from bench.run import ROOT, _migrate, _services

RESULTS = ROOT / "bench" / "results"
INSERT = "INSERT INTO outbox_entries (task_name, args, kwargs, labels) VALUES (%s, '[]', %s, '{}')"


async def _commits(url: str, count: int, latencies: list[float]) -> None:
    async with await psycopg.AsyncConnection.connect(url) as connection:
        for number in range(count):
            started = time.perf_counter()
            async with connection.transaction():
                await connection.execute(INSERT, ("bench.notify", json.dumps({"n": number})))
            latencies.append(time.perf_counter() - started)


async def _listen(url: str, stop: asyncio.Event) -> int:
    """A relay's LISTEN: notifications are read as they come, as the relay does."""
    received = 0
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
        await connection.execute(f"LISTEN {NOTIFY_CHANNEL}")
        while not stop.is_set():
            async for _ in connection.notifies(timeout=0.1):
                received += 1
    return received


async def _run(url: str, *, notify: bool, connections: int, commits: int) -> dict[str, Any]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
        switch = "ENABLE" if notify else "DISABLE"
        await admin.execute(f"ALTER TABLE outbox_entries {switch} TRIGGER outbox_entries_notify")
        await admin.execute("DELETE FROM outbox_entries")
    stop = asyncio.Event()
    listener = asyncio.create_task(_listen(url, stop))
    await asyncio.sleep(0.2)
    latencies: list[float] = []
    started = time.perf_counter()
    await asyncio.gather(*(_commits(url, commits, latencies) for _ in range(connections)))
    elapsed = time.perf_counter() - started
    await asyncio.sleep(0.2)
    stop.set()
    notified = await listener
    latencies.sort()
    return {
        "notify": notify,
        "commits_per_s": round(len(latencies) / elapsed),
        "p50_ms": round(statistics.median(latencies) * 1000, 3),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 3),
        "notifications_received": notified,
    }


async def main(database_url: str, connections: int, commits: int) -> dict[str, Any]:
    runs = [
        await _run(database_url, notify=notify, connections=connections, commits=commits)
        for notify in (False, True, False, True)
    ]
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as admin:
        await admin.execute("ALTER TABLE outbox_entries ENABLE TRIGGER outbox_entries_notify")
        await admin.execute("DELETE FROM outbox_entries")

    def best(notify: bool) -> int:
        return max(int(run["commits_per_s"]) for run in runs if run["notify"] is notify)

    return {
        "command": f"python -m bench.outbox_notify --connections {connections} --commits {commits}",
        "connections": connections,
        "commits_per_connection": commits,
        "runs": runs,
        "notify_cost_of_throughput": round(1 - best(True) / best(False), 3),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--commits", type=int, default=500)
    arguments = parser.parse_args()
    database_url = _services()["DATABASE_URL"]
    _migrate(database_url)  # before the loop: alembic's env.py runs one of its own
    result = asyncio.run(main(database_url, arguments.connections, arguments.commits))
    out = RESULTS / f"outbox-notify-{arguments.connections}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
