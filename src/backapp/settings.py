"""Process-wide settings, read once from the environment in a composition root."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Secrets that may also be given as a path in <NAME>_FILE (Docker/Kubernetes secrets):
# field name -> environment variable.
_FILE_SECRETS = {
    "backup_encryption_key": "BACKUP_ENCRYPTION_KEY",
    "admin_password": "BACKAPP_ADMIN_PASSWORD",
}


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
