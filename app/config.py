"""Settings from the environment (and a `.env` file), validated once at start.

Every field has a working default so a bare start serves. The environment variable of a field is
its name in upper case. A bad value raises `ConfigError` whose message is one line naming the
variable; the CLI prints it and exits, so the service never starts half-configured.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import msgspec

# The upload route's body limit is fixed when the app is built, so the setting has a ceiling.
DOCUMENT_MAX_BYTES_CEILING = 64 * 1024 * 1024
MAX_EMBEDDING_DIMENSIONS = 3072
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")


class ConfigError(Exception):
    """A configuration value that cannot be used; the message names the variable."""


class Settings(msgspec.Struct, kw_only=True, frozen=True):
    database_url: str | None = None
    database_pool_size: int = 32
    botlyne_data_dir: str = "./.botlyne"
    auto_migrate: bool = True
    bootstrap_admin_key: str | None = None

    redis_url: str | None = None

    google_api_key: str | None = None
    google_api_base_url: str | None = None
    gemini_model: str = "gemini-2.5-flash"
    gemini_embedding_model: str = "gemini-embedding-001"
    gemini_timeout_seconds: float = 20.0
    gemini_embedding_dimensions: int = 768

    document_max_bytes: int = 10 * 1024 * 1024

    evolution_api_base_url: str | None = None
    evolution_api_global_key: str | None = None

    webhook_signature_secret: str | None = None
    webhook_timestamp_tolerance_seconds: int = 300
    webhook_max_body_bytes: int = 1_048_576
    webhook_failed_attempts_per_minute: int = 20
    allowed_webhook_ips: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = ()
    rate_limit_requests_per_minute: int = 60
    rate_limit_requests_per_hour: int = 1000

    run_workers: bool = True
    worker_concurrency: int = 8
    bot_max_failures: int = 3
    delivery_max_age_seconds: int = 86400
    delivery_retry_base_seconds: float = 2.0
    queue_timeout_seconds: int = 300
    agent_response_timeout_seconds: int = 120
    queue_check_interval_seconds: float = 5.0

    # Maintenance (run_maintenance_tasks); an interval of 0 turns the in-process scheduler off.
    maintenance_interval_seconds: float = 3600.0
    abandoned_conversation_hours: int = 24
    message_retention_days: int = 7
    audit_retention_days: int = 90
    integration_event_retention_days: int = 30

    # The agents' console and its event stream.
    presence_grace_seconds: float = 60.0
    events_heartbeat_seconds: float = 15.0
    cors_allowed_origins: tuple[str, ...] = ()

    circuit_breaker_failure_threshold: int = 5
    circuit_breaker_timeout: float = 60.0

    log_level: str = "INFO"
    enable_structured_logging: bool = True
    alert_webhook_url: str | None = None
    alert_webhook_secret: str | None = None
    observability_token: str | None = None
    health_cache_seconds: float = 2.0
    health_check_interval_seconds: float = 60.0
    health_max_reply_delay_seconds: int = 120
    health_max_queue_wait_seconds: int = 900
    health_max_outbox_backlog: int = 500
    health_max_failed_deliveries_per_hour: int = 20

    # Fields whose environment value is a comma-separated list.
    list_fields: ClassVar[frozenset[str]] = frozenset(
        {"allowed_webhook_ips", "trusted_proxies", "cors_allowed_origins"}
    )

    def __post_init__(self) -> None:
        for name in (
            "database_pool_size",
            "webhook_timestamp_tolerance_seconds",
            "webhook_max_body_bytes",
            "webhook_failed_attempts_per_minute",
            "rate_limit_requests_per_minute",
            "rate_limit_requests_per_hour",
            "circuit_breaker_failure_threshold",
            "worker_concurrency",
            "bot_max_failures",
            "delivery_max_age_seconds",
            "queue_timeout_seconds",
            "agent_response_timeout_seconds",
            "abandoned_conversation_hours",
            "message_retention_days",
            "audit_retention_days",
            "integration_event_retention_days",
            "health_max_reply_delay_seconds",
            "health_max_queue_wait_seconds",
            "health_max_outbox_backlog",
            "health_max_failed_deliveries_per_hour",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.upper()}: must be a positive integer")
        if not 1 <= self.gemini_embedding_dimensions <= MAX_EMBEDDING_DIMENSIONS:
            raise ValueError(
                f"GEMINI_EMBEDDING_DIMENSIONS: must be between 1 and {MAX_EMBEDDING_DIMENSIONS}"
            )
        if not 1 <= self.document_max_bytes <= DOCUMENT_MAX_BYTES_CEILING:
            raise ValueError(
                f"DOCUMENT_MAX_BYTES: must be between 1 and {DOCUMENT_MAX_BYTES_CEILING}"
            )
        for name in (
            "gemini_timeout_seconds",
            "circuit_breaker_timeout",
            "queue_check_interval_seconds",
            "health_check_interval_seconds",
            "presence_grace_seconds",
            "events_heartbeat_seconds",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name.upper()}: must be a positive number of seconds")
        if self.health_cache_seconds < 0:
            raise ValueError("HEALTH_CACHE_SECONDS: must be zero or a positive number of seconds")
        if self.maintenance_interval_seconds < 0:
            raise ValueError(
                "MAINTENANCE_INTERVAL_SECONDS: must be a number of seconds (0 turns it off)"
            )
        if self.bootstrap_admin_key is not None and len(self.bootstrap_admin_key) < 24:
            raise ValueError("BOOTSTRAP_ADMIN_KEY: must be at least 24 characters")
        if self.log_level.upper() not in LOG_LEVELS:
            raise ValueError(f"LOG_LEVEL: must be one of {', '.join(LOG_LEVELS)}")
        if self.database_url is not None:
            _check_url("DATABASE_URL", self.database_url, ("postgresql", "postgresql+asyncpg"))
        if self.redis_url is not None:
            _check_url("REDIS_URL", self.redis_url, ("redis", "rediss", "unix"))
        for name in ("google_api_base_url", "evolution_api_base_url", "alert_webhook_url"):
            value = getattr(self, name)
            if value is not None:
                _check_url(name.upper(), value, ("http", "https"))
        _check_networks("ALLOWED_WEBHOOK_IPS", self.allowed_webhook_ips)
        _check_networks("TRUSTED_PROXIES", self.trusted_proxies)
        for origin in self.cors_allowed_origins:
            _check_origin("CORS_ALLOWED_ORIGINS", origin)

    @property
    def async_database_url(self) -> str | None:
        """The configured URL with the asyncpg driver, whatever scheme the operator wrote."""
        if self.database_url is None:
            return None
        scheme, sep, rest = self.database_url.partition("://")
        return f"postgresql+asyncpg{sep}{rest}" if scheme == "postgresql" else self.database_url

    @property
    def data_dir(self) -> Path:
        return Path(self.botlyne_data_dir).expanduser().resolve()


def _check_url(variable: str, value: str, schemes: tuple[str, ...]) -> None:
    parts = urlsplit(value)
    if parts.scheme not in schemes:
        raise ValueError(f"{variable}: scheme must be one of {', '.join(schemes)}")
    if parts.scheme in ("http", "https") and not parts.netloc:
        raise ValueError(f"{variable}: must be an absolute URL")


def _check_origin(variable: str, origin: str) -> None:
    """An origin as browsers send it: `scheme://host[:port]`, no path; or `*` for any."""
    if origin == "*":
        return
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query:
        raise ValueError(f"{variable}: {origin!r} is not an origin like https://app.example.com")


def _check_networks(variable: str, entries: tuple[str, ...]) -> None:
    if not entries:
        return
    from app.core.security.ip import parse_networks

    try:
        parse_networks(entries)
    except ValueError as exc:
        raise ValueError(f"{variable}: {exc}") from None


def read_dotenv(path: Path) -> dict[str, str]:
    """Parse the `KEY=value` lines of a `.env` file (comments, `export` and quotes allowed)."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def load_settings(
    environ: dict[str, str] | None = None, dotenv: Path | None = Path(".env")
) -> Settings:
    """Build Settings from `.env` overlaid by the process environment; raise ConfigError."""
    source: dict[str, str] = read_dotenv(dotenv) if dotenv is not None else {}
    source.update(os.environ if environ is None else environ)
    raw: dict[str, Any] = {}
    for field in msgspec.structs.fields(Settings):
        value = source.get(field.name.upper())
        if value is None or (value == "" and field.default is None):
            continue
        if field.name in Settings.list_fields:
            raw[field.name] = [item.strip() for item in value.split(",") if item.strip()]
        else:
            raw[field.name] = value
    try:
        return msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None


def _one_line(exc: msgspec.ValidationError) -> str:
    message = str(exc)
    # msgspec names the field as "at `$.field`"; operators know the variable, not the field.
    head, sep, where = message.partition(" - at `$.")
    if sep:
        field = where.split("`", 1)[0].split("[", 1)[0]
        return f"{field.upper()}: {head}"
    return message
