"""A small HTTP/1.1 load generator on bare asyncio streams: the fallback when wrk is missing.

httpx spends more CPU per request than the server does, so on two cores it measured itself
(about 70 req/s against a server that answers 8,000); raw keep-alive streams keep the
generator nearly as cheap as wrk.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class LoadResult:
    seconds: float
    statuses: Counter[int] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)  # sorted once the run ends
    socket_errors: int = 0
    timeouts: int = 0

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def non_2xx(self) -> int:
        return sum(count for status, count in self.statuses.items() if not 200 <= status < 300)

    def percentile_ms(self, q: float) -> float:
        if not self.latencies_ms:
            return 0.0
        return self.latencies_ms[min(len(self.latencies_ms) - 1, int(len(self.latencies_ms) * q))]


async def _read_response(reader: asyncio.StreamReader) -> int:
    """One HTTP/1.1 response with a Content-Length body (what the API sends); its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    length = 0
    for line in header_lines:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    await reader.readexactly(length)
    return int(status_line.split(" ", 2)[1])


def _request_bytes(
    method: str, host: str, port: int, target: str, headers: dict[str, str], body: str | None
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    payload = (body or "").encode()
    if body is not None:
        lines.append(f"Content-Length: {len(payload)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


async def keep_alive_load(
    url: str,
    *,
    seconds: float,
    connections: int,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: str | None = None,
    response_timeout: float = 5.0,
    connection_headers: Sequence[dict[str, str]] = (),
    bodies: Callable[[int, int], str] | None = None,
    pace: float = 0.0,
) -> LoadResult:
    """`connections` keep-alive connections sending `method url` back to back for `seconds`.
    Connection i adds `connection_headers[i]` (its own user, say) and sends
    `bodies(i, n)` as its n-th body when given (a new username each time). With `pace`, a
    connection sends at most one request every `pace` seconds (a steady rate, not a flood)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    request = _request_bytes(method, host, port, target, headers or {}, body)
    result = LoadResult(seconds=seconds)
    deadline = time.monotonic() + seconds

    async def connection(index: int) -> None:
        own = {**(headers or {}), **(connection_headers[index] if connection_headers else {})}
        sent = 0
        while time.monotonic() < deadline:
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError:
                result.socket_errors += 1
                await asyncio.sleep(0.01)
                continue
            try:
                while time.monotonic() < deadline:
                    start = time.monotonic()
                    if bodies is not None or connection_headers:
                        payload = bodies(index, sent) if bodies is not None else body
                        writer.write(_request_bytes(method, host, port, target, own, payload))
                        sent += 1
                    else:
                        writer.write(request)
                    response = _read_response(reader)
                    status = await asyncio.wait_for(response, timeout=response_timeout)
                    result.latencies_ms.append((time.monotonic() - start) * 1000)
                    result.statuses[status] += 1
                    if pace:
                        await asyncio.sleep(max(0.0, start + pace - time.monotonic()))
            except TimeoutError:
                result.timeouts += 1
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                result.socket_errors += 1  # refused, reset, cut short, or not HTTP/1.1
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

    started = time.monotonic()
    await asyncio.gather(*(connection(index) for index in range(connections)))
    result.seconds = time.monotonic() - started
    result.latencies_ms.sort()
    return result
