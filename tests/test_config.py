from __future__ import annotations

from pathlib import Path

import pytest

from app.config import ConfigError, load_settings


def test_defaults_need_no_environment() -> None:
    settings = load_settings({}, dotenv=None)
    assert settings.database_url is None
    assert settings.rate_limit_requests_per_minute == 60
    assert settings.rate_limit_requests_per_hour == 1000
    assert settings.circuit_breaker_failure_threshold == 5
    assert settings.circuit_breaker_timeout == 60
    assert settings.enable_structured_logging is True
    assert settings.log_level == "INFO"


def test_values_are_converted_from_strings() -> None:
    settings = load_settings(
        {
            "RATE_LIMIT_REQUESTS_PER_MINUTE": "10",
            "ENABLE_STRUCTURED_LOGGING": "false",
            "AUTO_MIGRATE": "0",
            "ALLOWED_WEBHOOK_IPS": "10.0.0.0/8, 192.168.1.7",
            "DATABASE_URL": "postgresql://u:p@db:5432/botlyne",
        },
        dotenv=None,
    )
    assert settings.rate_limit_requests_per_minute == 10
    assert settings.enable_structured_logging is False
    assert settings.auto_migrate is False
    assert settings.allowed_webhook_ips == ("10.0.0.0/8", "192.168.1.7")
    assert settings.async_database_url == "postgresql+asyncpg://u:p@db:5432/botlyne"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RATE_LIMIT_REQUESTS_PER_MINUTE", "many"),
        ("RATE_LIMIT_REQUESTS_PER_HOUR", "0"),
        ("ENABLE_STRUCTURED_LOGGING", "perhaps"),
        ("LOG_LEVEL", "LOUD"),
        ("DATABASE_URL", "mysql://x/y"),
        ("REDIS_URL", "http://x"),
        ("GOOGLE_API_BASE_URL", "not a url"),
        ("ALLOWED_WEBHOOK_IPS", "10.0.0.0/8,300.1.1.1"),
        ("TRUSTED_PROXIES", "nonsense"),
        ("CIRCUIT_BREAKER_TIMEOUT", "-1"),
        ("BOOTSTRAP_ADMIN_KEY", "short"),
        ("ALERT_WEBHOOK_URL", "hooks.example.com/alerts"),
        ("HEALTH_CACHE_SECONDS", "-1"),
        ("HEALTH_CHECK_INTERVAL_SECONDS", "0"),
        ("HEALTH_MAX_OUTBOX_BACKLOG", "0"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({variable: value}, dotenv=None)
    message = str(raised.value)
    assert message.startswith(f"{variable}:")
    assert "\n" not in message


def test_dotenv_is_read_and_environment_wins(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "# comment\nGEMINI_MODEL='from-dotenv'\nexport LOG_LEVEL=DEBUG\n"
        "RATE_LIMIT_REQUESTS_PER_HOUR=5\n"
    )
    settings = load_settings({"RATE_LIMIT_REQUESTS_PER_HOUR": "7"}, dotenv=dotenv)
    assert settings.gemini_model == "from-dotenv"
    assert settings.log_level == "DEBUG"
    assert settings.rate_limit_requests_per_hour == 7
