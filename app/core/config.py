"""Application settings, read from the environment and `.env`.

Every setting is listed, with a comment, in `.sample.env`; a test keeps the two in step.
"""

from __future__ import annotations

import enum
import re
from functools import lru_cache
from typing import Annotated, Any

from fastapi import Depends, Request
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_SECRET_KEY = "change-me-in-production-this-is-not-a-secret"  # noqa: S105
MIN_SECRET_LENGTH = 32


class Environment(enum.StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class LogFormat(enum.StrEnum):
    AUTO = "auto"
    CONSOLE = "console"
    JSON = "json"


class AuthTransport(enum.StrEnum):
    BEARER = "bearer"  # tokens in the body and the Authorization header only
    COOKIE = "cookie"  # browser sessions: HttpOnly cookies and a CSRF token, no tokens in bodies
    BOTH = "both"


class QueueBroker(enum.StrEnum):
    MEMORY = "memory"  # tasks run in-process (tests); nothing durable
    REDIS = "redis"  # Redis streams with acknowledged delivery


class StorageBackend(enum.StrEnum):
    LOCAL = "local"  # files under DATA_DIR/files, downloads through the app's signed URLs
    S3 = "s3"  # an S3-compatible bucket (AWS S3, MinIO ...), downloads through presigned URLs


class SettingsError(Exception):
    """Raised when the environment holds a value the application cannot start with."""


class AppSettings(BaseSettings):
    """Base for every settings class: same env files, unknown variables ignored."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
    )


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(AppSettings):
    app_name: str = "app"
    app_env: Environment = Environment.DEVELOPMENT

    secret_key: str = DEFAULT_SECRET_KEY

    database_url: str | None = None
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_max_overflow: int = Field(default=10, ge=0, le=200)
    db_pool_timeout: float = Field(default=5.0, gt=0, le=60)
    db_statement_timeout_ms: int = Field(default=15_000, ge=0)
    # A transaction left idle this long is ended by PostgreSQL: it holds a pooled connection.
    db_idle_in_transaction_timeout_ms: int = Field(default=30_000, ge=0)
    db_echo: bool = False
    # The role the app acts as on every connection (`-c role=...`): one that owns no table, so
    # PostgreSQL's row-level security applies to it. The migrations create `app_tenant`; empty
    # acts as the login itself (then use a login that owns no table: docs/modules.md, tenancy).
    db_role: str = "app_tenant"

    redis_url: str | None = None
    redis_timeout: float = Field(default=2.0, gt=0, le=30)
    # After a failed call Redis counts as down this long: callers fail at once, not after a timeout.
    redis_retry_after: float = Field(default=2.0, ge=0, le=300)

    data_dir: str = ".data"

    # Who may act (core's ActivePrincipal): accounts that have not verified their email too.
    auth_unverified_access_allowed: bool = False
    # How sign-in tokens travel (core reads the access cookie; the auth module writes it).
    auth_transport: AuthTransport = AuthTransport.BOTH

    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    cors_allow_credentials: bool = True
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)

    # /openapi.json and /docs: served in development; in production only when set.
    openapi_in_production: bool = False
    # The admin panel at /admin: on outside production; in production only when set to true.
    admin_enabled: bool | None = None

    # --- file storage (app.core.storage) ---
    storage_backend: StorageBackend = StorageBackend.LOCAL
    # How long a download URL (signed or presigned) works, in seconds.
    storage_url_ttl: int = Field(default=3600, ge=1, le=7 * 86_400)
    s3_bucket: str | None = None
    # Empty: AWS itself; else the S3-compatible server's URL (http://127.0.0.1:9000 for MinIO).
    s3_endpoint_url: str | None = None
    # The host presigned URLs name, when browsers reach the store elsewhere than the app does.
    s3_public_endpoint_url: str | None = None
    s3_region: str | None = None
    # Empty: the usual AWS credential chain (instance role, AWS_* variables, profile).
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None

    log_level: str = "INFO"
    log_format: LogFormat = LogFormat.AUTO
    # FastAPI's built-in OpenTelemetry request spans. On by itself when OTEL_TRACES_EXPORTER /
    # OTEL_EXPORTER_OTLP_ENDPOINT configure an exporter; set it when the deployment installs its
    # own tracer provider (opentelemetry-instrument). Off: no per-request provider check.
    telemetry_enabled: bool = False
    # Error reports to Sentry (empty: none are sent).
    sentry_dsn: str = ""
    # Prometheus metrics at /metrics (same port, outside /api and the OpenAPI document); with a
    # token set, a scrape must send `Authorization: Bearer <token>`.
    metrics_enabled: bool = True
    metrics_token: str = ""
    # `app worker` serves its own metrics on this port (0: not served).
    metrics_worker_port: int = Field(default=9100, ge=0, le=65535)

    server_host: str = "127.0.0.1"
    server_port: int = Field(default=8000, ge=1, le=65535)
    server_workers: int = Field(default=1, ge=1, le=64)
    # On SIGTERM: seconds in-flight requests may take to finish before connections are closed.
    server_graceful_timeout: int = Field(default=20, ge=1, le=600)

    health_timeout: float = Field(default=1.0, gt=0, le=10)
    # gc.freeze() once start-up is over: the collector stops walking the objects that live as
    # long as the process (docs/performance.md has the measured effect on tail latency).
    gc_freeze_after_startup: bool = True

    # --- shared core services: cache, queue, mail, rate limits ---
    cache_default_ttl: int = Field(default=300, ge=1)

    queue_broker: QueueBroker = QueueBroker.REDIS
    queue_max_retries: int = Field(default=3, ge=0, le=100)
    queue_retry_delay: float = Field(default=5.0, ge=0, le=3600)
    queue_result_ttl: int = Field(default=0, ge=0)
    queue_redelivery_timeout: float = Field(default=600.0, gt=0, le=86_400)
    # On SIGTERM a worker waits this long for running tasks; unfinished ones are redelivered.
    queue_shutdown_timeout: float = Field(default=20.0, gt=0, le=3600)

    # Transactional outbox: queued work is written with the use case, relayed to the queue.
    outbox_relay_in_worker: bool = True
    outbox_poll_interval: float = Field(default=1.0, gt=0, le=60)
    outbox_batch_size: int = Field(default=100, ge=1, le=10_000)
    outbox_requeue_after: float = Field(default=3600.0, gt=0, le=7 * 86_400)
    outbox_keep_done_hours: int = Field(default=24, ge=0, le=24 * 365)

    smtp_host: str | None = None
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_use_tls: bool = False
    smtp_start_tls: bool = False
    smtp_timeout: float = Field(default=10.0, gt=0, le=300)
    mail_from: str = "App <no-reply@example.com>"

    rate_limit_enabled: bool = True
    rate_limit_default: str = "120/minute"
    rate_limit_fail_open: bool = True
    # Sign-in and password checks when Redis is down: refused (503) unless set.
    rate_limit_credentials_fail_open: bool = False
    rate_limit_ipv6_prefix: int = Field(default=64, ge=32, le=128)
    # RATE_LIMIT_ENABLED=false in production only with this acknowledgement.
    rate_limit_disabled_in_production: bool = False

    @field_validator("cors_origins", "trusted_proxies", mode="before")
    @classmethod
    def _csv_list(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator(
        "admin_enabled",
        "s3_bucket",
        "s3_endpoint_url",
        "s3_public_endpoint_url",
        "s3_region",
        "s3_access_key_id",
        "s3_secret_access_key",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("postgresql://", "postgresql+psycopg://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("db_role")
    @classmethod
    def _role_name(cls, value: str) -> str:
        if value and not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", value):
            raise ValueError("must be a lower-case PostgreSQL role name (letters, digits, _)")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @model_validator(mode="after")
    def _production_rules(self) -> Settings:
        if self.app_env is Environment.PRODUCTION:
            if self.secret_key == DEFAULT_SECRET_KEY or len(self.secret_key) < MIN_SECRET_LENGTH:
                raise ValueError(
                    f"SECRET_KEY must be set to a random value of at least {MIN_SECRET_LENGTH} "
                    "characters in production (generate one with: openssl rand -hex 32)"
                )
            if self.database_url is None:
                raise ValueError("DATABASE_URL must be set in production")
            if self.redis_url is None:
                raise ValueError("REDIS_URL must be set in production")
            if self.db_echo:
                raise ValueError("DB_ECHO logs query values (hashes included): not in production")
            if "*" in self.cors_origins:
                raise ValueError("CORS_ORIGINS=* is refused in production: list the origins")
            if not self.rate_limit_enabled and not self.rate_limit_disabled_in_production:
                raise ValueError(
                    "RATE_LIMIT_ENABLED=false leaves sign-in open to guessing; in production "
                    "set RATE_LIMIT_DISABLED_IN_PRODUCTION=true as well to mean it"
                )
        if self.storage_backend is StorageBackend.S3 and not self.s3_bucket:
            raise ValueError("STORAGE_BACKEND=s3 needs S3_BUCKET")
        if self.outbox_requeue_after <= self.queue_redelivery_timeout:
            raise ValueError(
                "OUTBOX_REQUEUE_AFTER must be longer than QUEUE_REDELIVERY_TIMEOUT: a task the "
                "queue is still going to redeliver would be queued a second time"
            )
        if "*" in self.cors_origins and self.cors_allow_credentials:
            raise ValueError(
                "CORS_ORIGINS=* with CORS_ALLOW_CREDENTIALS=true would let any site send "
                "credentialed requests: list the origins, or turn credentials off"
            )
        return self

    @property
    def is_production(self) -> bool:
        return self.app_env is Environment.PRODUCTION

    @property
    def serves_openapi(self) -> bool:
        return not self.is_production or self.openapi_in_production

    @property
    def serves_admin(self) -> bool:
        if self.admin_enabled is None:
            return not self.is_production
        return self.admin_enabled

    @property
    def json_logs(self) -> bool:
        if self.log_format is LogFormat.AUTO:
            return self.is_production
        return self.log_format is LogFormat.JSON

    @property
    def postgres_url(self) -> str:
        """The database URL as libpq (psycopg itself) takes it."""
        _, _, rest = self.sqlalchemy_url.partition("://")
        return f"postgresql://{rest}"

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL with the psycopg 3 driver, whatever scheme the user wrote."""
        if self.database_url is None:
            raise SettingsError("DATABASE_URL is not set and no embedded database was started")
        _, _, rest = self.database_url.partition("://")
        return f"postgresql+psycopg://{rest}"


def describe_validation_error(error: ValidationError) -> str:
    """One line per bad setting, naming the environment variable, never echoing secrets."""
    lines = []
    for item in error.errors():
        name = "_".join(str(part) for part in item["loc"]).upper() or "settings"
        message = str(item["msg"]).removeprefix("Value error, ")
        lines.append(f"{name}: {message}" if item["loc"] else message)
    return "invalid configuration:\n  " + "\n  ".join(lines)


def load_settings(settings_class: type[AppSettings] = Settings, **overrides: Any) -> Any:
    """Build a settings object, turning a validation error into a readable SettingsError."""
    try:
        return settings_class(**overrides)
    except ValidationError as error:
        raise SettingsError(describe_validation_error(error)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    settings: Settings = load_settings(Settings)
    return settings


async def get_app_settings(request: Request) -> Settings:
    """The settings the running app was created with (tests create apps with their own)."""
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
