"""Backup configurations: validation beyond the schema, storage, edits, next run times.

A config's identity (``StoredConfig``, and a config file's: ``identity_of_file``) lives in
``services.identity``, which needs no database (the CLI's --config-file commands)."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from backapp.db import Config, Session, utcnow
from backapp.db.repositories import configs as repo
from backapp.domain.config import BackupConfig, parse_config, slugify
from backapp.domain.schedule import Schedule
from backapp.errors import ConfigError, ConflictError, NotFoundError
from backapp.services import notify_targets
from backapp.services.identity import StoredConfig


def document_of(config: Config) -> BackupConfig:
    """Given a stored config, return its validated document."""
    return parse_config(config.document, strict=True)


def identity_of(config: Config) -> StoredConfig:
    """Given a stored config, return its identity."""
    return StoredConfig(config.id, config.slug, document_of(config))


def find(session: Session, name_or_id: str) -> Config:
    """Given a config's id or exact name, return it. Raise NotFoundError, or ConfigError
    when several configs have that name."""
    config = repo.get(session, name_or_id)
    if config is not None:
        return config
    named = [c for c in repo.list_configs(session) if c.name == name_or_id]
    if not named:
        raise NotFoundError(f"no backup configuration has the id or name {name_or_id!r}")
    if len(named) > 1:
        ids = ", ".join(c.id for c in named)
        raise ConfigError(f"several configurations are named {name_or_id!r}; give an id: {ids}")
    return named[0]


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
    _store_notify(session, config, parsed)
    return config


def _store_notify(session: Session, config: Config, parsed: BackupConfig) -> None:
    """Keep the notification URLs (secrets) out of the stored document: they become the
    config's targets, and the document holds their masked form. Raise ConfigError."""
    notify = notify_targets.store_config_targets(session, config.id, parsed.options.notify)
    if notify != parsed.options.notify:
        options = parsed.options.model_copy(update={"notify": notify})
        config.document = parsed.model_copy(update={"options": options}).to_json_dict()


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
    _store_notify(session, config, parsed)
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
    notify_targets.delete_config_targets(session, config_id)


def existing_ids(session: Session, ids: set[str]) -> set[str]:
    """Given config ids, return those that still exist."""
    return repo.existing_ids(session, ids)
