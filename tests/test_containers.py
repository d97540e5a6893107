"""Static checks of Dockerfile, .dockerignore and docker-compose.yaml (no Docker engine needed).

They hold the container files to the code: every `app ...` command they run exists, every
environment variable they set is a real setting, every health check probes a real route.
"""

from __future__ import annotations

import fnmatch
import importlib
import ipaddress
import json
import pkgutil
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.routing import APIRoute
from pydantic import AliasChoices, ValidationError
from typer.testing import CliRunner

from app.cli import cli
from app.core.config import (
    DEFAULT_SECRET_KEY,
    AppSettings,
    Environment,
    Settings,
    StorageBackend,
)
from app.core.health import router as health_router
from tests.support import PROJECT_ROOT

APP_SERVICES = ("api", "worker", "scheduler", "migrate")
LONG_RUNNING = ("api", "worker", "scheduler", "postgres", "redis", "mailpit")
OBSERVABILITY_SERVICES = ("prometheus", "grafana")
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - inside a container, as the image and compose intend
SERVICE_URLS = {
    "DATABASE_URL": "postgresql://postgres:postgres@postgres:5432/app",
    "REDIS_URL": "redis://redis:6379/0",
    "SMTP_HOST": "mailpit",
    "SMTP_PORT": "1025",
    "SERVER_HOST": ALL_INTERFACES,
    "APP_ENV": "development",
}
PRODUCTION_REQUIRED = ("DATABASE_URL", "REDIS_URL")
SETTINGS_PACKAGES = ("app.core", "app.modules")
INDEX_OPTIONS = re.compile(
    r"--(extra-)?index-url|--index(?![\w-])|--default-index|--find-links|\bPIP_INDEX|\bUV_(DEFAULT_)?INDEX"
)


# --- parsing helpers ---------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    stage: int  # index of the FROM this instruction belongs to


@cache
def dockerfile() -> tuple[Instruction, ...]:
    """Instructions with continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in (PROJECT_ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "Dockerfile ends inside a continued line"

    instructions: list[Instruction] = []
    stage = -1
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword, args.strip(), stage))
    return tuple(instructions)


def final_stage() -> list[Instruction]:
    instructions = dockerfile()
    last = instructions[-1].stage
    return [item for item in instructions if item.stage == last]


def exec_form(args: str) -> list[str]:
    """The JSON array of CMD/ENTRYPOINT/HEALTHCHECK CMD; shell form is refused on purpose."""
    value = json.loads(args)
    assert isinstance(value, list), f"not an exec-form array: {args}"
    assert all(isinstance(item, str) for item in value)
    return value


def env_assignments(instructions: list[Instruction]) -> dict[str, str]:
    values: dict[str, str] = {}
    for item in instructions:
        if item.keyword == "ENV":
            for pair in shlex.split(item.args):
                name, _, value = pair.partition("=")
                values[name] = value
    return values


def healthcheck() -> list[str]:
    (check,) = [item for item in final_stage() if item.keyword == "HEALTHCHECK"]
    words = check.args.split()
    start = words.index("CMD")
    assert all(word.startswith("--") for word in words[:start]), check.args
    return exec_form(check.args.split("CMD", 1)[1].strip())


@cache
def compose() -> dict[str, Any]:
    data = yaml.safe_load((PROJECT_ROOT / "docker-compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def service(name: str) -> dict[str, Any]:
    services: dict[str, dict[str, Any]] = compose()["services"]
    return services[name]


def command_words(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else list(command)


def service_environment(name: str) -> dict[str, str]:
    environment = service(name).get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {key: str(value) for key, value in environment.items()}


def dotenv(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def image_pinned(reference: str) -> bool:
    """A tag naming at least a major version ("16-alpine", "v1.27", "0.13.9"), never latest."""
    name, _, tag = reference.rpartition(":")
    return bool(name) and "/" not in tag and re.match(r"v?\d+", tag) is not None


def published(port: str | int) -> tuple[str, str]:
    """(host port, container port) from the short syntax "[ip:]host:container"."""
    parts = str(port).split(":")
    assert len(parts) >= 2, f"port {port} is not published on a fixed host port"
    return parts[-2], parts[-1]


def invoke_help(words: list[str]) -> int:
    """Exit code of `app <words> --help`: 0 only when the command and its options exist."""
    assert words[0] == "app", f"not an `app` command: {words}"
    return CliRunner().invoke(cli, [*words[1:], "--help"]).exit_code


@cache
def settings_classes() -> tuple[type[AppSettings], ...]:
    """Settings and every AppSettings subclass defined under app.core and app.modules."""
    for package_name in SETTINGS_PACKAGES:
        package = importlib.import_module(package_name)
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package_name}."):
            importlib.import_module(info.name)
    found: list[type[AppSettings]] = []
    pending: list[type[AppSettings]] = [AppSettings]
    while pending:
        for subclass in pending.pop().__subclasses__():
            pending.append(subclass)
            if subclass.__module__.startswith(SETTINGS_PACKAGES):
                found.append(subclass)
    return tuple(found)


def env_names(settings_class: type[AppSettings]) -> set[str]:
    prefix = str(settings_class.model_config.get("env_prefix", ""))
    names: set[str] = set()
    for field_name, field in settings_class.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, str):
            names.add(alias.upper())
        elif isinstance(alias, AliasChoices):
            names.update(str(choice).upper() for choice in alias.choices)
        else:
            names.add(f"{prefix}{field_name}".upper())
    return names


@cache
def known_settings() -> frozenset[str]:
    return frozenset(name for cls in settings_classes() for name in env_names(cls))


def ignored(path: str) -> bool:
    """Whether .dockerignore keeps `path` (relative, with slashes) out of the build context."""
    patterns = [
        line.strip().rstrip("/")
        for line in (PROJECT_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert not any(p.startswith("!") for p in patterns), "exceptions are not modelled here"
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        if pattern.startswith("**/"):
            tail = pattern[3:]
            if any(fnmatch.fnmatchcase(part, tail) for part in parts):
                return True
        elif any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes):
            return True
    return False


# --- Dockerfile --------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_on_pinned_slim_python() -> None:
    bases = [item.args.split()[0] for item in dockerfile() if item.keyword == "FROM"]
    assert len(bases) >= 2, "a builder stage and a runtime stage"
    assert re.fullmatch(r"python:3\.11-slim(-[a-z]+)?", bases[-1]), bases[-1]
    copied_images = re.findall(r"--from=(\S+)", " ".join(i.args for i in dockerfile()))
    stage_names = {
        item.args.split()[-1]
        for item in dockerfile()
        if item.keyword == "FROM" and " AS " in item.args.upper()
    }
    for reference in [*bases, *(ref for ref in copied_images if ref not in stage_names)]:
        assert image_pinned(reference), f"{reference} is not pinned to a version"


def test_dockerfile_uv_matches_the_dev_lock() -> None:
    (reference,) = re.findall(
        r"--from=(ghcr\.io/astral-sh/uv:\S+)", PROJECT_ROOT.joinpath("Dockerfile").read_text()
    )
    locked = re.search(r"^uv==(\S+)", (PROJECT_ROOT / "requirements/dev.txt").read_text(), re.M)
    assert locked is not None
    assert reference.rpartition(":")[2] == locked.group(1)


def test_dockerfile_installs_the_runtime_lock_only_with_hashes() -> None:
    text = (PROJECT_ROOT / "Dockerfile").read_text()
    runs = [item.args for item in dockerfile() if item.keyword == "RUN"]
    copies = [item.args for item in dockerfile() if item.keyword == "COPY"]
    assert any("requirements/base.txt" in args for args in copies)
    assert any(
        re.search(r"uv pip (sync|install) .*--require-hashes.* requirements/base\.txt", run)
        for run in runs
    )
    # The project on top, without resolving anything new; editable so that app/cli.py's
    # PROJECT_ROOT (alembic.ini, migrations/) is /app, where compose also mounts the code.
    assert any(re.search(r"uv pip install .*--no-deps.*(--editable|-e) \.", run) for run in runs)
    assert "dev.txt" not in text
    assert not re.search(r"--group|--extra|--all-extras|--dev\b", text), "runtime only"
    assert not INDEX_OPTIONS.search(text), "no package index in the repository: teams use mirrors"


def test_dockerfile_copies_only_what_the_context_keeps() -> None:
    sources: list[str] = []
    for item in dockerfile():
        if item.keyword == "COPY" and "--from" not in item.args:
            sources += [word for word in item.args.split()[:-1] if not word.startswith("--")]
    assert sources
    for source in sources:
        assert (PROJECT_ROOT / source).exists(), f"COPY {source}: no such file"
        assert not ignored(source), f"COPY {source}: excluded by .dockerignore"


def test_dockerfile_runtime_stage_runs_as_non_root_after_installing() -> None:
    stage = final_stage()
    users = [index for index, item in enumerate(stage) if item.keyword == "USER"]
    assert users, "the runtime stage sets a USER"
    user = stage[users[-1]].args.split(":")[0]
    assert user not in {"root", "0"}
    last_install = max(
        index for index, item in enumerate(stage) if item.keyword in {"RUN", "COPY", "ADD"}
    )
    assert users[-1] > last_install


def test_dockerfile_runtime_stage_has_no_build_tools() -> None:
    stage_text = " ".join(item.args for item in final_stage())
    assert "uv" not in re.findall(r"[\w.-]+", stage_text.replace("/opt/venv", ""))
    assert "pip install" not in stage_text


def test_dockerfile_serves_in_production_by_default() -> None:
    env = env_assignments(final_stage())
    assert env["APP_ENV"] == Environment.PRODUCTION.value
    assert env["SERVER_HOST"] == ALL_INTERFACES
    assert set(env) - {"PATH", "VIRTUAL_ENV"} <= known_settings() | {
        "PYTHONUNBUFFERED",
        "PYTHONDONTWRITEBYTECODE",
    }
    (cmd,) = [item for item in final_stage() if item.keyword == "CMD"]
    assert exec_form(cmd.args) == ["app", "serve"]
    assert not [item for item in dockerfile() if item.keyword == "ENTRYPOINT"]


def test_dockerfile_bakes_in_no_secret() -> None:
    for item in dockerfile():
        if item.keyword in {"ENV", "ARG", "LABEL"}:
            assert not re.search(r"SECRET|PASSWORD|TOKEN|_KEY\b", item.args, re.I), item.args
    assert not [item for item in dockerfile() if item.keyword == "ADD"], "COPY, not ADD"


def test_dockerfile_healthcheck_probes_the_liveness_route() -> None:
    command = healthcheck()
    assert command[:2] == ["python", "-c"], "slim has no curl: the check uses python"
    assert "/health/live" in command[2]
    paths = {route.path for route in health_router.routes if isinstance(route, APIRoute)}
    assert "/health/live" in paths


class _Live(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health/live" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def live_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Live)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _run_healthcheck(port: int) -> int:
    code = healthcheck()[2]
    return subprocess.run(
        [sys.executable, "-c", code],
        # A proxy in the container's environment must not intercept the loopback probe.
        env={"SERVER_PORT": str(port), "http_proxy": f"http://127.0.0.1:{_unused_port()}"},
        capture_output=True,
        timeout=10,
        check=False,
    ).returncode


def _unused_port() -> int:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Live)
    port = server.server_address[1]
    server.server_close()
    return port


def test_dockerfile_healthcheck_passes_when_live_and_fails_when_down(live_server: int) -> None:
    assert _run_healthcheck(live_server) == 0
    assert _run_healthcheck(_unused_port()) != 0


def test_dockerfile_commands_are_real_cli_commands() -> None:
    commands = [exec_form(i.args) for i in final_stage() if i.keyword in {"CMD", "ENTRYPOINT"}]
    for words in commands:
        if words[0] == "app":
            assert invoke_help(words) == 0, f"`{' '.join(words)}` is not an app command"


# --- .dockerignore -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        ".venv",
        ".venv/bin/python",
        ".data/postgres",
        ".env",
        ".env.local",
        ".git/HEAD",
        "tests/test_containers.py",
        "requirements/dev.txt",
        "app/__pycache__/cli.cpython-311.pyc",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
        ".coverage",
    ],
)
def test_dockerignore_keeps_local_state_out(path: str) -> None:
    assert ignored(path)


@pytest.mark.parametrize(
    "path",
    [
        "app/cli.py",
        "migrations/env.py",
        "alembic.ini",
        "pyproject.toml",
        "README.md",
        "requirements/base.txt",
    ],
)
def test_dockerignore_keeps_what_the_image_needs(path: str) -> None:
    assert not ignored(path)


# --- docker-compose.yaml -----------------------------------------------------------------


def test_compose_defines_the_stack() -> None:
    assert set(compose()["services"]) == {
        *APP_SERVICES,
        "postgres",
        "redis",
        "mailpit",
        *OBSERVABILITY_SERVICES,
    }
    # Prometheus and Grafana start only with `--profile observability`.
    for name, spec in compose()["services"].items():
        assert (spec.get("profiles") == ["observability"]) is (name in OBSERVABILITY_SERVICES)


@pytest.mark.parametrize("name", APP_SERVICES)
def test_compose_app_services_build_this_repository(name: str) -> None:
    spec = service(name)
    build = spec["build"]
    assert (build if isinstance(build, str) else build["context"]) == "."
    assert spec["env_file"] in (".env", [".env"])
    assert (PROJECT_ROOT / ".sample.env").is_file(), "the README copies it to .env"


@pytest.mark.parametrize(
    ("name", "command"),
    [
        ("api", "app dev --host 0.0.0.0 --port 8000 --no-worker"),
        ("worker", "app worker"),
        ("scheduler", "app scheduler"),
        ("migrate", "app migrate upgrade head"),
    ],
)
def test_compose_commands(name: str, command: str) -> None:
    words = command_words(service(name)["command"])
    assert words == shlex.split(command)
    assert invoke_help(words) == 0, f"`{command}` is not an app command (see app/cli.py)"


def test_compose_api_port_is_the_one_the_image_health_check_probes() -> None:
    words = command_words(service("api")["command"])
    port = words[words.index("--port") + 1]
    effective = {**dotenv(PROJECT_ROOT / ".sample.env"), **service_environment("api")}
    assert effective.get("SERVER_PORT", str(Settings.model_fields["server_port"].default)) == port
    assert [published(p) for p in service("api")["ports"]] == [("8000", port)]


@pytest.mark.parametrize("name", APP_SERVICES)
def test_compose_app_services_reach_the_other_containers(name: str) -> None:
    environment = service_environment(name)
    for key, value in SERVICE_URLS.items():
        assert environment.get(key) == value, key


@pytest.mark.parametrize("name", APP_SERVICES)
def test_compose_sets_only_known_settings(name: str) -> None:
    unknown = set(service_environment(name)) - known_settings()
    assert not unknown, f"not read by any settings class: {sorted(unknown)}"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_compose_environment_gives_valid_settings(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in known_settings():
        monkeypatch.delenv(variable, raising=False)
    environment = {**dotenv(PROJECT_ROOT / ".sample.env"), **service_environment(name)}
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    for settings_class in settings_classes():
        settings_class(_env_file=None)

    settings = Settings(_env_file=None)
    assert settings.app_env is Environment.DEVELOPMENT
    assert settings.database_url == SERVICE_URLS["DATABASE_URL"]
    # What production cannot default is provided: the same wiring passes production rules.
    for variable in PRODUCTION_REQUIRED:
        assert variable in service_environment(name)
    monkeypatch.setenv("APP_ENV", Environment.PRODUCTION.value)
    monkeypatch.setenv("SECRET_KEY", "x" * 64)
    Settings(_env_file=None)


def test_compose_smtp_settings_exist() -> None:
    """SMTP_HOST/SMTP_PORT point the app at Mailpit; they must be real settings."""
    missing = {"SMTP_HOST", "SMTP_PORT"} - known_settings()
    assert not missing, f"no settings class reads {sorted(missing)}"


@pytest.mark.parametrize("name", ["api", "worker", "scheduler"])
def test_compose_long_running_app_services_wait_for_migrations(name: str) -> None:
    depends_on = service(name)["depends_on"]
    assert depends_on["postgres"]["condition"] == "service_healthy"
    assert depends_on["redis"]["condition"] == "service_healthy"
    assert depends_on["migrate"]["condition"] == "service_completed_successfully"


def test_compose_dependencies_are_consistent() -> None:
    services: dict[str, dict[str, Any]] = compose()["services"]
    assert service("migrate")["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name, spec in services.items():
        for target, rule in spec.get("depends_on", {}).items():
            assert target in services, f"{name} depends on unknown {target}"
            condition = rule["condition"]
            if condition == "service_healthy":
                check = services[target].get("healthcheck", {})
                assert check.get("test"), f"{name} waits for {target}, which has no check"
                assert not check.get("disable"), f"{name} waits for {target}'s disabled check"
            elif condition == "service_completed_successfully":
                assert services[target].get("restart") in {"no", "on-failure"}
            else:
                assert condition == "service_started"


def test_compose_health_checks() -> None:
    assert "pg_isready" in service("postgres")["healthcheck"]["test"]
    assert service("redis")["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]
    assert "readyz" in service("mailpit")["healthcheck"]["test"]
    # The api keeps the image's HEALTHCHECK (GET /health/live); the other processes built from
    # the image serve no HTTP, so that check would mark them unhealthy.
    assert "healthcheck" not in service("api")
    for name in ("worker", "scheduler", "migrate"):
        assert service(name)["healthcheck"] == {"disable": True}


def test_compose_restart_policies() -> None:
    for name in LONG_RUNNING:
        assert service(name)["restart"] == "unless-stopped", name
    # Quoted in the file: a bare `no` is the boolean false in YAML 1.1.
    assert service("migrate")["restart"] in {"no", "on-failure"}


def test_compose_images_are_pinned() -> None:
    names = ("postgres", "redis", "mailpit", *OBSERVABILITY_SERVICES)
    images = {name: service(name)["image"] for name in names}
    assert images["postgres"].startswith("postgres:")
    assert images["redis"].startswith("redis:")
    assert images["mailpit"].startswith("axllent/mailpit:")
    for reference in images.values():
        assert image_pinned(reference), f"{reference} is not pinned to a version"


def test_compose_ports() -> None:
    assert ("8025", "8025") in [published(p) for p in service("mailpit")["ports"]]
    assert ("8000", "8000") in [published(p) for p in service("api")["ports"]]


def test_compose_postgres_data_lives_in_a_named_volume() -> None:
    assert "postgres-data" in compose()["volumes"]
    assert "postgres-data:/var/lib/postgresql/data" in service("postgres")["volumes"]


@pytest.mark.parametrize("name", APP_SERVICES)
def test_compose_mounts_the_code_read_only_where_the_image_has_it(name: str) -> None:
    workdir = [item.args for item in final_stage() if item.keyword == "WORKDIR"][-1]
    mounts = [volume.split(":") for volume in service(name)["volumes"]]
    assert ["./app", f"{workdir}/app", "ro"] in mounts
    for source, target, mode in mounts:
        assert (PROJECT_ROOT / source).exists(), source
        assert target.startswith(f"{workdir}/")
        assert mode == "ro"


def test_compose_has_no_package_index() -> None:
    assert not INDEX_OPTIONS.search((PROJECT_ROOT / "docker-compose.yaml").read_text())


# --- compose.production.yaml, deploy/nginx/nginx.conf, compose.mailpit.yaml ---------------

PRODUCTION_FILE = "compose.production.yaml"
MAILPIT_FILE = "compose.mailpit.yaml"
MINIO_FILE = "compose.minio.yaml"
PRODUCTION_ENV_FILE = ".env.production"
PRODUCTION_SAMPLE = ".sample.production.env"
NGINX_CONF = "deploy/nginx/nginx.conf"
SCALED = ("api", "worker", "scheduler")
PRODUCTION_LONG_RUNNING = ("proxy", *SCALED, "postgres", "redis")
POSTGRES_IMAGE_SETTINGS = {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}


@cache
def compose_file(name: str) -> dict[str, Any]:
    data = yaml.safe_load((PROJECT_ROOT / name).read_text())
    assert isinstance(data, dict)
    return data


def production(name: str) -> dict[str, Any]:
    services: dict[str, dict[str, Any]] = compose_file(PRODUCTION_FILE)["services"]
    return services[name]


def production_environment(name: str) -> dict[str, str]:
    environment = production(name).get("environment", {})
    return {key: str(value) for key, value in environment.items()}


def seconds(duration: str) -> float:
    """A compose duration ("30s", "1m30s", "1h") in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert "".join(n + u for n, u in parts) == duration, f"not a duration: {duration}"
    return sum(float(number) * units[unit] for number, unit in parts)


def nginx_directives() -> list[list[str]]:
    """Every simple directive of nginx.conf as its words (quotes and comments dropped)."""
    text = re.sub(r"#[^\n]*", "", (PROJECT_ROOT / NGINX_CONF).read_text())
    statements = re.split(r"[;{}]", text)
    return [shlex.split(statement) for statement in statements if statement.strip()]


def directive(name: str) -> list[list[str]]:
    return [words[1:] for words in nginx_directives() if words[0] == name]


def test_production_compose_runs_the_stack_with_only_the_proxy_published() -> None:
    services: dict[str, dict[str, Any]] = compose_file(PRODUCTION_FILE)["services"]
    assert set(services) == {"proxy", *APP_SERVICES, "postgres", "redis"}
    published_by = {name for name, spec in services.items() if spec.get("ports")}
    assert published_by == {"proxy"}, "clients reach the API through nginx only"
    (listen,) = directive("listen")
    assert [published(port) for port in production("proxy")["ports"]] == [("80", listen[0])]
    for name, spec in services.items():
        assert "network_mode" not in spec, name
        assert spec["networks"] == ["backend"], f"{name} is not on the proxy network"


def test_production_compose_scales_api_and_workers_and_runs_two_schedulers() -> None:
    for name in SCALED:
        spec = production(name)
        # `scale` is what Debian's docker-compose 1.29 and Compose v2 both honour.
        assert spec["scale"] >= 2, name
        assert "container_name" not in spec, f"{name}: a fixed name cannot be scaled"
        if "replicas" in spec.get("deploy", {}):
            assert spec["deploy"]["replicas"] == spec["scale"], "v2 refuses two counts"
    assert production("scheduler")["scale"] == 2


@pytest.mark.parametrize(
    ("name", "command"),
    [
        ("api", "app serve"),
        ("worker", "app worker"),
        ("scheduler", "app scheduler"),
        ("migrate", "app migrate upgrade head"),
    ],
)
def test_production_compose_commands_are_real_cli_commands(name: str, command: str) -> None:
    words = command_words(production(name)["command"])
    assert words == shlex.split(command)
    assert invoke_help(words) == 0, f"`{command}` is not an app command (see app/cli.py)"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_production_compose_runs_the_image_as_built(name: str) -> None:
    spec = production(name)
    assert spec["build"] == "."
    assert "volumes" not in spec, "no source mounts: the code is the image's"
    assert spec["env_file"] in (PRODUCTION_ENV_FILE, [PRODUCTION_ENV_FILE])
    environment = production_environment(name)
    assert environment["APP_ENV"] == Environment.PRODUCTION.value
    assert environment["REDIS_URL"] == SERVICE_URLS["REDIS_URL"]
    assert environment["SERVER_HOST"] == ALL_INTERFACES
    unknown = set(environment) - known_settings()
    assert not unknown, f"not read by any settings class: {sorted(unknown)}"
    assert production(name)["logging"]["options"]["max-size"], "logs are rotated"


def test_production_compose_starts_after_migrations_and_the_proxy_after_the_api() -> None:
    services: dict[str, dict[str, Any]] = compose_file(PRODUCTION_FILE)["services"]
    for name in SCALED:
        depends_on = production(name)["depends_on"]
        assert depends_on["postgres"]["condition"] == "service_healthy"
        assert depends_on["redis"]["condition"] == "service_healthy"
        assert depends_on["migrate"]["condition"] == "service_completed_successfully"
    assert production("migrate")["depends_on"]["postgres"]["condition"] == "service_healthy"
    # nginx resolves the replicas again every few seconds, but starting it after a healthy API
    # means its first requests do not meet a 502.
    assert production("proxy")["depends_on"]["api"]["condition"] == "service_healthy"
    for name, spec in services.items():
        for target, rule in spec.get("depends_on", {}).items():
            condition = rule["condition"]
            check = services[target].get("healthcheck", {})
            if condition == "service_healthy":
                assert not check.get("disable"), f"{name} waits for {target}'s disabled check"
                # No `test`: the image's HEALTHCHECK, which only our own image has.
                assert check.get("test") or services[target].get("build") == ".", target
            elif condition == "service_completed_successfully":
                assert services[target]["restart"] in {"no", "on-failure"}
            else:
                assert condition == "service_started"


def test_production_compose_gives_requests_and_tasks_time_to_finish_on_stop() -> None:
    sample = dotenv(PROJECT_ROOT / PRODUCTION_SAMPLE)
    longest = max(
        float(sample.get("SERVER_GRACEFUL_TIMEOUT", Settings().server_graceful_timeout)),
        float(sample.get("QUEUE_SHUTDOWN_TIMEOUT", Settings().queue_shutdown_timeout)),
    )
    for name in SCALED:
        assert seconds(production(name)["stop_grace_period"]) > longest, name


def test_production_compose_health_checks_and_restart_policies() -> None:
    # The api keeps the image's check (GET /health/live), probed more often than the image's
    # 30 s so the proxy starts sooner; the other app processes serve no HTTP.
    api_check = production("api")["healthcheck"]
    assert "test" not in api_check
    assert not api_check.get("disable")
    assert seconds(api_check["interval"]) <= 10
    for name in ("worker", "scheduler", "migrate"):
        assert production(name)["healthcheck"] == {"disable": True}
    assert "pg_isready" in " ".join(production("postgres")["healthcheck"]["test"])
    assert production("redis")["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]
    probe = production("proxy")["healthcheck"]["test"]
    locations = [words[-1] for words in directive("location")]
    assert any(probe[-1].endswith(location) for location in locations), probe
    for name in PRODUCTION_LONG_RUNNING:
        assert production(name)["restart"] == "unless-stopped", name
    assert production("migrate")["restart"] in {"no", "on-failure"}


def test_production_compose_keeps_data_in_named_volumes() -> None:
    assert {"postgres-data", "redis-data"} <= set(compose_file(PRODUCTION_FILE)["volumes"])
    assert "postgres-data:/var/lib/postgresql/data" in production("postgres")["volumes"]
    assert "redis-data:/data" in production("redis")["volumes"]
    assert "--appendonly" in production("redis")["command"], "queued tasks survive a restart"


def test_production_compose_images_are_pinned() -> None:
    images = {name: production(name)["image"] for name in ("proxy", "postgres", "redis")}
    assert images["proxy"].startswith("nginx:")
    for reference in images.values():
        assert image_pinned(reference), f"{reference} is not pinned to a version"


def test_production_api_trusts_forwarded_for_from_the_proxy_network_only() -> None:
    from starlette.requests import Request

    from app.core.ratelimit import client_ip

    (subnet,) = [
        item["subnet"]
        for item in compose_file(PRODUCTION_FILE)["networks"]["backend"]["ipam"]["config"]
    ]
    network = ipaddress.ip_network(subnet)
    assert network.is_private
    settings = Settings(
        _env_file=None, trusted_proxies=production_environment("api")["TRUSTED_PROXIES"]
    )
    for name in APP_SERVICES:
        assert production_environment(name)["TRUSTED_PROXIES"] == subnet, name
    trusted = tuple(ipaddress.ip_network(value) for value in settings.trusted_proxies)

    def seen(peer: str, forwarded_for: str) -> str:
        scope = {
            "type": "http",
            "headers": [(b"x-forwarded-for", forwarded_for.encode())],
            "client": (peer, 40000),
        }
        return client_ip(Request(scope), trusted)

    nginx = str(network[10])
    assert seen(nginx, "203.0.113.7") == "203.0.113.7", "rate limits count the real client"
    assert seen("203.0.113.9", "198.51.100.1") == "203.0.113.9", "no one else is believed"
    # nginx is the edge: it replaces what the client sent with the address it saw.
    assert ["X-Forwarded-For", "$remote_addr"] in directive("proxy_set_header")


def test_production_nginx_balances_over_every_api_replica() -> None:
    proxy = production("proxy")
    assert f"./{NGINX_CONF}:/etc/nginx/nginx.conf:ro" in proxy["volumes"]
    # Docker's DNS, asked again while running: scaled or restarted replicas join the rotation
    # (an upstream block would keep the addresses nginx resolved at start).
    (resolver,) = directive("resolver")
    assert resolver[0] == "127.0.0.11"
    (proxy_pass,) = directive("proxy_pass")
    assert proxy_pass[0].startswith("$"), "a variable, so that nginx resolves it at run time"
    target = {words[0]: words[1] for words in directive("set")}[proxy_pass[0]]
    port = production_environment("api")["SERVER_PORT"]
    assert target == f"http://api:{port}", "the api service, on the port `app serve` listens on"


def test_production_sample_env_lists_what_must_be_set() -> None:
    sample = dotenv(PROJECT_ROOT / PRODUCTION_SAMPLE)
    unknown = set(sample) - known_settings() - POSTGRES_IMAGE_SETTINGS
    assert not unknown, f"not read by any settings class: {sorted(unknown)}"
    assert {"SECRET_KEY", "DATABASE_URL", "SMTP_HOST", "POSTGRES_PASSWORD"} <= set(sample)
    assert not sample["SECRET_KEY"], "no secret in the repository"
    assert not sample["POSTGRES_PASSWORD"], "no secret in the repository"
    url = sample["DATABASE_URL"]
    assert url.startswith(f"postgresql://{sample['POSTGRES_USER']}:")
    assert url.endswith(f"@postgres:5432/{sample['POSTGRES_DB']}")
    assert production("postgres")["env_file"] in (PRODUCTION_ENV_FILE, [PRODUCTION_ENV_FILE])


@pytest.mark.parametrize("secret", ["", "short", DEFAULT_SECRET_KEY])
def test_production_compose_refuses_to_start_until_the_secret_key_is_set(
    secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in known_settings():
        monkeypatch.delenv(variable, raising=False)
    environment = {**dotenv(PROJECT_ROOT / PRODUCTION_SAMPLE), **production_environment("api")}
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SECRET_KEY", secret)
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        Settings(_env_file=None)
    monkeypatch.setenv("SECRET_KEY", "x" * 64)
    for settings_class in settings_classes():
        settings_class(_env_file=None)
    assert Settings(_env_file=None).is_production


def test_production_env_file_stays_out_of_git_and_the_image() -> None:
    assert ignored(PRODUCTION_ENV_FILE)
    patterns = (PROJECT_ROOT / ".gitignore").read_text().split()
    assert any(fnmatch.fnmatchcase(PRODUCTION_ENV_FILE, pattern) for pattern in patterns)
    assert not any(fnmatch.fnmatchcase(PRODUCTION_SAMPLE, pattern) for pattern in patterns)


def test_mailpit_override_sends_every_mail_to_mailpit() -> None:
    override: dict[str, dict[str, Any]] = compose_file(MAILPIT_FILE)["services"]
    assert set(override) == {"api", "worker", "mailpit"}
    mailpit = override["mailpit"]
    assert image_pinned(mailpit["image"])
    assert mailpit["image"].startswith("axllent/mailpit:")
    assert mailpit["networks"] == ["backend"]
    assert [published(port) for port in mailpit["ports"]] == [("8025", "8025")]
    for name in ("api", "worker"):  # the API sends some mail itself; the worker the queued
        environment = {key: str(value) for key, value in override[name]["environment"].items()}
        assert environment["SMTP_HOST"] == "mailpit"
        assert environment["SMTP_PORT"] == "1025"
        assert set(environment) <= known_settings()
        assert set(override[name]) == {"environment"}, "the override changes the mail only"


@pytest.mark.parametrize("name", ["api", "worker", "storage-init"])
def test_minio_override_gives_its_app_services_valid_s3_settings(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docker compose -f docker-compose.yaml -f compose.minio.yaml: the override's environment
    is merged over the stack's service (storage-init is the override's own)."""
    override: dict[str, dict[str, Any]] = compose_file(MINIO_FILE)["services"]
    merged = {**compose()["services"].get(name, {}), **override[name]}
    assert merged["build"] == "."
    assert merged["env_file"] in (".env", [".env"])
    base = service_environment(name) if name in compose()["services"] else {}
    environment = {
        **dotenv(PROJECT_ROOT / ".sample.env"),
        **base,
        **{key: str(value) for key, value in override[name]["environment"].items()},
    }
    for variable in known_settings():
        monkeypatch.delenv(variable, raising=False)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)
    assert settings.app_env is Environment.DEVELOPMENT
    assert settings.storage_backend is StorageBackend.S3
    assert settings.s3_endpoint_url == "http://minio:9000"
    assert override["minio"]["ports"][0].startswith("127.0.0.1:9000:")
    assert settings.s3_public_endpoint_url == "http://localhost:9000"  # the browser's way in


@pytest.mark.parametrize("name", [PRODUCTION_FILE, MAILPIT_FILE, NGINX_CONF, PRODUCTION_SAMPLE])
def test_production_files_name_no_package_index(name: str) -> None:
    assert not INDEX_OPTIONS.search((PROJECT_ROOT / name).read_text())
