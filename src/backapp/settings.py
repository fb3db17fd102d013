"""Process-wide settings, read once from the environment in a composition root."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Secrets that may also be given as a path in <NAME>_FILE (Docker/Kubernetes secrets):
# field name -> environment variable.
_FILE_SECRETS = {
    "backup_encryption_key": "BACKUP_ENCRYPTION_KEY",
    "admin_password": "BACKAPP_ADMIN_PASSWORD",
    "metrics_token": "BACKAPP_METRICS_TOKEN",
}
# Every variable that holds a secret (a <NAME>_FILE holds one too): logs never show them.
SECRET_VARIABLES = (
    *_FILE_SECRETS.values(),
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "BACKAPP_NOTIFY_URLS",
)


class Settings(BaseSettings):
    """Given the environment (and an optional ``.env``), hold BackApp's settings."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    database_url: str = Field(
        "sqlite:///./data/backapp.db", validation_alias=AliasChoices("DATABASE_URL")
    )
    data_dir: Path = Field(Path("data"), validation_alias=AliasChoices("BACKAPP_DATA_DIR"))
    backup_encryption_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("BACKUP_ENCRYPTION_KEY")
    )
    aws_s3_endpoint: str | None = Field(None, validation_alias=AliasChoices("AWS_S3_ENDPOINT"))
    admin_password: SecretStr | None = Field(
        None, validation_alias=AliasChoices("BACKAPP_ADMIN_PASSWORD")
    )
    max_concurrent_runs: int = Field(
        1, ge=1, le=64, validation_alias=AliasChoices("BACKAPP_MAX_CONCURRENT_RUNS")
    )
    misfire_grace: float = Field(
        3600,
        ge=0,
        validation_alias=AliasChoices("BACKAPP_MISFIRE_GRACE"),
        description="seconds (or 30m, 1h) within which a missed scheduled run still runs",
    )
    run_lease: float = Field(
        30,
        ge=3,
        validation_alias=AliasChoices("BACKAPP_RUN_LEASE"),
        description="seconds without a heartbeat after which a run's worker counts as lost",
    )
    shutdown_grace: float = Field(
        30,
        ge=0,
        validation_alias=AliasChoices("BACKAPP_SHUTDOWN_GRACE"),
        description="seconds a stopping scheduler lets running backups finish",
    )
    tick_interval: float = Field(
        1.0, gt=0, le=60, validation_alias=AliasChoices("BACKAPP_TICK_INTERVAL")
    )
    # How often a scheduler records its own heartbeat (the `workers` table); tests shorten it.
    scheduler_heartbeat: float = Field(
        5.0, gt=0, le=60, validation_alias=AliasChoices("BACKAPP_SCHEDULER_HEARTBEAT")
    )
    notify_urls: str = Field(
        "",
        validation_alias=AliasChoices("BACKAPP_NOTIFY_URLS"),
        description="Apprise URLs (space or comma separated) told of failures, recoveries, misses",
    )
    base_url: str = Field(
        "",
        validation_alias=AliasChoices("BACKAPP_BASE_URL"),
        description="where users reach BackApp (https://backup.example.com): links in messages",
    )
    hooks: bool = Field(
        True,
        validation_alias=AliasChoices("BACKAPP_HOOKS"),
        description="off: no config's hooks run on this server (each run with hooks says so)",
    )
    metrics_token: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("BACKAPP_METRICS_TOKEN"),
        description="bearer token that may read /metrics (besides users' sessions and tokens)",
    )

    @field_validator(
        "backup_encryption_key", "aws_s3_endpoint", "admin_password", "metrics_token", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # docker-compose passes unset variables as empty strings.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("misfire_grace", "run_lease", "shutdown_grace", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    @model_validator(mode="before")
    @classmethod
    def _read_secret_files(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for field, env_name in _FILE_SECRETS.items():
            if data.get(field) or data.get(env_name) or os.environ.get(env_name):
                continue
            path = data.get(f"{env_name}_FILE") or os.environ.get(f"{env_name}_FILE")
            if path:
                data[field] = Path(path).read_text(encoding="utf-8").strip()
        return data


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class LogSettings(BaseSettings):
    """Given the environment, hold how a process logs: read apart from Settings, first, so
    that a mistake in another setting is still logged the way that was asked."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    log_format: Literal["text", "json"] = Field(
        "text",
        validation_alias=AliasChoices("BACKAPP_LOG_FORMAT"),
        description="text (for people) or json (one object per line, for log collectors)",
    )
    log_level: str | None = Field(
        None,
        validation_alias=AliasChoices("BACKAPP_LOG_LEVEL"),
        description="DEBUG, INFO, WARNING, ERROR (default: WARNING for commands, INFO for "
        "the scheduler; -v is INFO)",
    )

    @field_validator("log_format", mode="before")
    @classmethod
    def _format(cls, value: Any) -> Any:
        return (value.strip().lower() or "text") if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> Any:
        if not isinstance(value, str) or not value.strip():
            return None
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"not a log level: {value!r} (use {', '.join(LOG_LEVELS)})")
        return level


def parse_duration(text: str) -> float:
    """Given '90', '90s', '30m', '1h' or '1d', return seconds. Raise ValueError."""
    text = text.strip().lower()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if text and text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (use seconds, or 30m, 1h, 1d)") from None
