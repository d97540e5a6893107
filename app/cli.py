"""The `app` command: run, migrate and inspect the service."""

from __future__ import annotations

import os
import signal
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import typer

from app.core.config import Environment, Settings, SettingsError, get_settings, load_settings
from app.core.metrics import multiprocess_directory
from app.core.outbox.cli import cli as outbox_cli
from app.core.storage.cli import cli as storage_cli

cli = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
migrate_cli = typer.Typer(no_args_is_help=True, help="Database migrations (Alembic).")
cli.add_typer(migrate_cli, name="migrate")
cli.add_typer(outbox_cli, name="outbox")
cli.add_typer(storage_cli, name="storage")

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def _settings_or_exit() -> None:
    try:
        load_settings()
    except SettingsError as error:
        _fail(str(error))


def _exit_zero_after_sigterm() -> None:
    """uvicorn and taskiq handle SIGTERM themselves (a graceful stop), then uvicorn raises it
    again with the handler it found in place: this one ends the process with status 0, and
    lets exit hooks (the embedded servers') run, instead of dying by the signal."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))


def _with_embedded_services() -> None:
    """Development convenience: start PostgreSQL/Redis under .data/ when no URL is set."""
    from app.core.embedded import ensure_development_services

    _exit_zero_after_sigterm()
    ensure_development_services()


@cli.command()
def dev(
    host: Annotated[str | None, typer.Option(help="defaults to SERVER_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="defaults to SERVER_PORT")] = None,
    reload: Annotated[bool, typer.Option(help="restart on code changes")] = True,
    worker: Annotated[bool, typer.Option(help="also run a task worker (mail, jobs)")] = True,
) -> None:
    """Development server: embedded services when needed, migrations, a task worker, and the
    API with reload on SERVER_HOST:SERVER_PORT (127.0.0.1:8000)."""
    import uvicorn

    from app.core.logging import configure_logging

    _settings_or_exit()
    _with_embedded_services()
    settings = get_settings()
    configure_logging(level=settings.log_level, json_logs=settings.json_logs)
    _run_alembic("upgrade", "head")
    if worker:
        _start_dev_worker()
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host or settings.server_host,
        port=port or settings.server_port,
        reload=reload,
        reload_dirs=[str(PROJECT_ROOT / "app")],
        log_config=None,
    )


def _start_dev_worker() -> None:
    """`app worker` beside the dev server, so queued mail and jobs run; stopped on exit."""
    import atexit
    import subprocess

    from app.core.embedded import stop_process

    process = subprocess.Popen(  # the embedded services' URLs are in the environment
        [sys.executable, "-c", "from app.cli import main; main()", "worker"]
    )
    atexit.register(stop_process, process)


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="defaults to SERVER_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="defaults to SERVER_PORT")] = None,
    workers: Annotated[int | None, typer.Option(help="defaults to SERVER_WORKERS")] = None,
) -> None:
    """Production server (uvicorn with uvloop and httptools). On SIGTERM it stops accepting,
    lets in-flight requests finish (SERVER_GRACEFUL_TIMEOUT), runs the app's shutdown and exits
    0."""
    _settings_or_exit()
    settings = get_settings()
    workers = workers or settings.server_workers
    _exit_zero_after_sigterm()
    with ExitStack() as stack:
        if workers > 1 and settings.metrics_enabled:
            # uvicorn spawns its workers: they see the directory and /metrics sums them.
            stack.enter_context(multiprocess_directory())
        _serve(settings, host=host, port=port, workers=workers)


def _serve(settings: Settings, *, host: str | None, port: int | None, workers: int) -> None:
    import uvicorn

    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host or settings.server_host,
        port=port or settings.server_port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=settings.server_graceful_timeout,
    )


@cli.command()
def worker(
    workers: Annotated[int, typer.Option(help="worker processes")] = 1,
    max_async_tasks: Annotated[int, typer.Option(help="concurrent tasks per process")] = 100,
) -> None:
    """Task worker: runs queued and scheduled tasks (taskiq, Redis streams) and relays the
    outbox to the queue (OUTBOX_RELAY_IN_WORKER). SIGTERM stops it gracefully
    (QUEUE_SHUTDOWN_TIMEOUT)."""
    import multiprocessing
    from contextlib import ExitStack

    from taskiq.cli.worker.args import WorkerArgs
    from taskiq.cli.worker.run import run_worker

    from app.core.metrics import worker_metrics_server

    _settings_or_exit()
    settings = get_settings()
    if settings.app_env is not Environment.PRODUCTION:
        _with_embedded_services()
    with ExitStack() as stack:
        if settings.metrics_enabled and settings.metrics_worker_port:
            # Worker processes report through PROMETHEUS_MULTIPROC_DIR, which they only see
            # when started afresh (see worker_metrics_server).
            multiprocessing.set_start_method("spawn", force=True)
            try:
                stack.enter_context(worker_metrics_server(settings.metrics_worker_port))
            except OSError as error:  # the port is taken (another worker on this host)
                typer.secho(
                    f"warning: no metrics on port {settings.metrics_worker_port}: {error}",
                    fg=typer.colors.YELLOW,
                    err=True,
                )
        status = run_worker(
            WorkerArgs(
                broker="app.core.queue.worker:broker",
                modules=[],
                configure_logging=False,
                workers=workers,
                max_async_tasks=max_async_tasks,
                # On SIGTERM: no new task is taken; running ones get this long to finish, and
                # one that does not is left unacknowledged, for another worker to run again.
                wait_tasks_timeout=settings.queue_shutdown_timeout,
            )
        )
    raise typer.Exit(code=status or 0)


@cli.command()
def scheduler() -> None:
    """Scheduler: sends periodic tasks (their `schedule` label) to the workers. Any number
    may run: each tick is claimed in Redis, and sent by the one that claimed it."""
    import asyncio

    from taskiq.cli.scheduler.args import SchedulerArgs
    from taskiq.cli.scheduler.run import run_scheduler

    _settings_or_exit()
    if get_settings().app_env is not Environment.PRODUCTION:
        _with_embedded_services()
    # It holds no work to finish: SIGTERM ends it at once, with status 0. Without a handler a
    # container's process 1 ignores SIGTERM and `docker compose stop` waits for the SIGKILL.
    _exit_zero_after_sigterm()
    asyncio.run(
        run_scheduler(
            SchedulerArgs(
                scheduler="app.core.queue.worker:scheduler", modules=[], configure_logging=False
            )
        )
    )


def _alembic_config() -> object:
    from alembic.config import Config

    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    return config


def _run_alembic(command_name: str, *args: object, **kwargs: object) -> None:
    from alembic import command

    from app.core.logging import configure_logging

    _settings_or_exit()
    if get_settings().app_env is not Environment.PRODUCTION:
        _with_embedded_services()
    settings = get_settings()
    configure_logging(level=settings.log_level, json_logs=settings.json_logs)  # shows progress
    getattr(command, command_name)(_alembic_config(), *args, **kwargs)


@migrate_cli.command()
def upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply migrations up to REVISION (default: head)."""
    _run_alembic("upgrade", revision)


@migrate_cli.command()
def downgrade(revision: Annotated[str, typer.Argument()] = "-1") -> None:
    """Revert migrations down to REVISION (default: one step)."""
    _run_alembic("downgrade", revision)


@migrate_cli.command()
def revision(
    message: Annotated[str, typer.Option("-m", "--message", help="what the migration does")],
    autogenerate: Annotated[
        bool, typer.Option(help="diff the models against the database")
    ] = False,
) -> None:
    """Create a new migration file."""
    _run_alembic("revision", message=message, autogenerate=autogenerate)


@migrate_cli.command()
def history() -> None:
    """List migrations."""
    _run_alembic("history")


@migrate_cli.command()
def current() -> None:
    """Show the database's current revision."""
    _run_alembic("current")


@cli.command()
def routes() -> None:
    """List every HTTP operation: method, path, summary (from the OpenAPI schema)."""
    from app.main import create_app

    _settings_or_exit()
    schema = create_app().openapi()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            typer.echo(f"{method.upper():<7} {path:<45} {operation.get('summary', '')}")


@cli.command("new-module")
def new_module(
    name: Annotated[str, typer.Argument(help="module name, lower_snake_case plural: orders")],
    fields: Annotated[
        list[str] | None,
        typer.Argument(
            help="name:type[?^!] with type str text int float decimal bool date datetime uuid "
            "json ref:<module> choices[a*,b]; ? optional, ^ unique, ! indexed",
            show_default=False,
        ),
    ] = None,
    crud: Annotated[bool, typer.Option("--crud/--no-crud", help="write CRUD endpoints")] = True,
    owned: Annotated[bool, typer.Option(help="records belong to their creator")] = False,
    soft_delete: Annotated[bool, typer.Option(help="delete marks rows, keeps them")] = False,
    tenant: Annotated[
        bool, typer.Option(help="records belong to the current organization (row-level security)")
    ] = False,
    entity: Annotated[str | None, typer.Option(help="model class name (default: singular)")] = None,
    dry_run: Annotated[bool, typer.Option(help="print the files, write nothing")] = False,
) -> None:
    """Create a feature module: code, tests, factory and migration. Edits no existing file."""
    from app.scaffold import SpecError, parse_fields, plan_module, write_files
    from app.scaffold.generator import Options, format_files

    try:
        specs = parse_fields(list(fields or []))
        plan = plan_module(
            PROJECT_ROOT,
            name,
            specs,
            Options(crud=crud, owned=owned, soft_delete=soft_delete, tenant=tenant, entity=entity),
        )
        if dry_run:
            for item in plan.files:
                typer.secho(f"--- {item.path}", bold=True)
                typer.echo(item.content)
            typer.echo(f"(dry run: {len(plan.files)} files, nothing written)")
            return
        written = write_files(PROJECT_ROOT, plan)
    except SpecError as error:
        _fail(str(error))
        return
    format_files(PROJECT_ROOT, written)
    for path in written:
        typer.echo(f"created {path}")
    typer.echo(
        f"\nNext: `make migrate` to create the table, `make test` to run its tests; "
        f"the API is at /api/v1/{name}."
    )


def _mount_module_commands() -> None:
    from app.core.modules import discover_modules

    for spec in discover_modules():
        if spec.cli is not None:
            cli.add_typer(spec.cli)


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        _mount_module_commands()
        cli()
    except SettingsError as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        sys.exit(2)
