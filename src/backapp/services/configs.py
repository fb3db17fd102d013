"""Backup configurations: validation beyond the schema, storage, edits, next run times."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from backapp.db import Config, Session, utcnow
from backapp.db.repositories import configs as repo
from backapp.domain.config import BackupConfig, parse_config, slugify
from backapp.domain.schedule import Schedule
from backapp.errors import ConfigError, ConflictError, NotFoundError


def document_of(config: Config) -> BackupConfig:
    """Given a stored config, return its validated document."""
    return parse_config(config.document, strict=True)


def next_fire(document: BackupConfig, after: datetime) -> datetime | None:
    """Given a config document, return its next scheduled run after a moment (None if disabled)."""
    if not document.enabled:
        return None
    return Schedule(document.schedule.cron_expression, document.schedule.timezone).next_after(after)


def next_verify(document: BackupConfig, after: datetime) -> datetime | None:
    """Given a config document, return its next scheduled verification (None if none)."""
    spec = document.options.verify_schedule
    if not document.enabled or not spec:
        return None
    return Schedule(spec, document.schedule.timezone).next_after(after)


def to_json(config: Config) -> dict[str, Any]:
    """Given a stored config, return its API representation (camelCase)."""
    return {
        "id": config.id,
        **config.document,
        "slug": config.slug,
        "version": config.version,
        "createdAt": config.created_at.isoformat(),
        "updatedAt": config.updated_at.isoformat(),
        "nextRunAt": config.next_run_at.isoformat() if config.next_run_at else None,
        "nextVerifyAt": config.next_verify_at.isoformat() if config.next_verify_at else None,
    }


def get(session: Session, config_id: str, *, for_update: bool = False) -> Config:
    """Given an id, return the config. Raise NotFoundError."""
    config = repo.get(session, config_id, for_update=for_update)
    if config is None:
        raise NotFoundError(f"backup configuration {config_id} not found")
    return config


def list_all(session: Session) -> list[Config]:
    """Return every config."""
    return repo.list_configs(session)


def _unique_slug(session: Session, name: str) -> str:
    base = slugify(name)
    slug, n = base, 2
    while repo.slug_taken(session, slug):
        slug = f"{base}-{n}"
        n += 1
    return slug


def create(session: Session, document: Any, now: datetime | None = None) -> Config:
    """Given a config document, validate and store it. Raise ConfigError."""
    parsed = parse_config(document, strict=True)
    now = now or utcnow()
    config = Config(
        name=parsed.name,
        slug=_unique_slug(session, parsed.name),
        enabled=parsed.enabled,
        document=parsed.to_json_dict(),
        created_at=now,
        updated_at=now,
        next_run_at=next_fire(parsed, now),
        next_verify_at=next_verify(parsed, now),
    )
    repo.add(session, config)
    return config


def deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Given a document and a partial one, return them merged: objects merge, the rest replaces.

    A ``null`` in the patch removes the field.
    """
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def update(
    session: Session,
    config_id: str,
    patch: Any,
    *,
    expected_version: int | None = None,
    now: datetime | None = None,
) -> Config:
    """Given a partial document, merge it into the config and revalidate the whole.

    The row is locked while it is read and written, so concurrent edits apply one after
    the other; with ``expected_version`` (If-Match) a stale edit is refused.
    Raise NotFoundError, ConfigError, ConflictError.
    """
    if not isinstance(patch, dict):
        raise ConfigError("a PATCH body must be a JSON object", [("(document)", "not an object")])
    config = get(session, config_id, for_update=True)
    if expected_version is not None and expected_version != config.version:
        raise ConflictError(
            f"configuration changed since version {expected_version} "
            f"(now version {config.version}); reload it and try again"
        )
    merged = deep_merge(config.document, patch)
    parsed = parse_config(merged, strict=True)
    now = now or utcnow()
    previous = document_of(config)
    schedule_changed = parsed.schedule != previous.schedule or parsed.enabled != config.enabled
    verify_changed = (
        parsed.options.verify_schedule != previous.options.verify_schedule or schedule_changed
    )
    config.document = parsed.to_json_dict()
    config.name = parsed.name
    config.enabled = parsed.enabled
    config.version += 1
    config.updated_at = now
    if schedule_changed:
        config.next_run_at = next_fire(parsed, now)
    if verify_changed:
        config.next_verify_at = next_verify(parsed, now)
    session.flush()
    return config


def delete(session: Session, config_id: str) -> None:
    """Given an id, delete the config (its runs and stored backups stay). Raise NotFoundError."""
    repo.delete(session, get(session, config_id))


def existing_ids(session: Session, ids: set[str]) -> set[str]:
    """Given config ids, return those that still exist."""
    return repo.existing_ids(session, ids)
