"""Queries on backup configurations."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backapp.db.models import Config
from backapp.db.repositories import storable


def list_configs(session: Session) -> list[Config]:
    """Return every config, by name."""
    return list(session.scalars(select(Config).order_by(Config.name, Config.created_at)))


def get(session: Session, config_id: str, *, for_update: bool = False) -> Config | None:
    """Given an id, return the config (locked for update if asked) or None."""
    if not storable(config_id):
        return None
    query = select(Config).where(Config.id == config_id)
    if for_update:
        query = query.with_for_update()
    return session.scalar(query)


def slug_taken(session: Session, slug: str) -> bool:
    """Given a slug, return whether a config already uses it."""
    return session.scalar(select(func.count()).where(Config.slug == slug)) != 0


def existing_ids(session: Session, ids: set[str]) -> set[str]:
    """Given config ids, return those that still exist."""
    if not ids:
        return set()
    return set(session.scalars(select(Config.id).where(Config.id.in_(ids))))


def add(session: Session, config: Config) -> None:
    """Given a new config, add it."""
    session.add(config)
    session.flush()


def delete(session: Session, config: Config) -> None:
    """Given a config, delete it."""
    session.delete(config)
    session.flush()


def counts(session: Session) -> tuple[int, int]:
    """Return (all configs, enabled configs)."""
    total = session.scalar(select(func.count()).select_from(Config)) or 0
    active = session.scalar(select(func.count()).where(Config.enabled.is_(True))) or 0
    return int(total), int(active)


def due_verify(session: Session, now: datetime) -> list[Config]:
    """Return enabled configs whose scheduled verification time has come."""
    return list(
        session.scalars(
            select(Config).where(Config.enabled.is_(True), Config.next_verify_at <= now)
        )
    )


def due(session: Session, now: datetime) -> list[Config]:
    """Return enabled configs whose next run time has come."""
    return list(
        session.scalars(select(Config).where(Config.enabled.is_(True), Config.next_run_at <= now))
    )
