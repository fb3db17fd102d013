"""Notification targets: where alerts, recoveries and successes are told.

Three sources: BACKAPP_NOTIFY_URLS (the environment, read-only), the settings page
(global targets, for every config) and a config's ``options.notify.urls``. A URL is a
secret: it lives in the ``notification_targets`` table only, and everything shown — the
settings page, the API, a config's document — carries its masked form. A config saved
with a masked URL keeps the target it stands for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from backapp.db import NotificationTarget, Session, utcnow
from backapp.db.repositories import notifications as repo
from backapp.domain.config import DEFAULT_NOTIFY_EVENTS, NOTIFY_EVENTS, NotifySpec
from backapp.errors import ConfigError, NotFoundError, TransportError
from backapp.notify import Notification, build_transport, check_url, mask_url, split_urls
from backapp.settings import Settings

ENV_PREFIX = "env-"  # ids of the targets of BACKAPP_NOTIFY_URLS (env-0, env-1, …)


@dataclass(frozen=True)
class Target:
    """A target as the sender and the pages see it; ``url`` is the secret (never shown),
    ``masked`` what may be shown. ``source``: environment, settings or config."""

    id: str
    source: str
    label: str
    url: str
    masked: str
    events: tuple[str, ...]
    added_at: datetime | None  # None: always (an environment target counts from start)
    config_id: str | None = None

    def wants(self, event: str, created_at: datetime) -> bool:
        """Given an event and when it happened, return whether this target is told of it:
        it asks for that event and existed then."""
        return event in self.events and (self.added_at is None or self.added_at <= created_at)


def _of(row: NotificationTarget) -> Target:
    return Target(
        id=row.id,
        source="settings" if row.config_id is None else "config",
        label=row.label,
        url=row.url,
        masked=mask_url(row.url),
        events=tuple(row.events),
        added_at=row.created_at,
        config_id=row.config_id,
    )


def environment_targets(settings: Settings, since: datetime | None) -> list[Target]:
    """Given the settings and when they were read, return BACKAPP_NOTIFY_URLS as targets."""
    return [
        Target(
            id=f"{ENV_PREFIX}{i}",
            source="environment",
            label="BACKAPP_NOTIFY_URLS",
            url=url,
            masked=mask_url(url),
            events=DEFAULT_NOTIFY_EVENTS,
            added_at=since,
        )
        for i, url in enumerate(split_urls(settings.notify_urls))
    ]


def list_targets(session: Session, settings: Settings) -> list[Target]:
    """Return every target: the environment's, the settings page's, then the configs'."""
    return environment_targets(settings, None) + [_of(t) for t in repo.list_targets(session)]


def targets_for(
    session: Session, settings: Settings, config_id: str | None, env_since: datetime
) -> list[Target]:
    """Given a config (or None), return the targets told about it."""
    rows = repo.targets_of(session, config_id)
    return environment_targets(settings, env_since) + [_of(t) for t in rows]


def get_target(session: Session, settings: Settings, target_id: str) -> Target:
    """Given an id, return the target. Raise NotFoundError."""
    for target in environment_targets(settings, None):
        if target.id == target_id:
            return target
    row = repo.get_target(session, target_id)
    if row is None:
        raise NotFoundError(f"notification target {target_id} not found")
    return _of(row)


def _events(events: Sequence[str]) -> list[str]:
    unknown = [e for e in events if e not in NOTIFY_EVENTS]
    if unknown:
        raise ConfigError(
            f"unknown event {unknown[0]!r}: use {', '.join(NOTIFY_EVENTS)}",
            [("events", f"unknown event {unknown[0]!r}")],
        )
    if not events:
        raise ConfigError("choose at least one event", [("events", "choose at least one")])
    return [e for e in NOTIFY_EVENTS if e in events]


def _url(url: str, field: str = "url") -> str:
    url = url.strip()
    try:
        check_url(url)
    except TransportError as exc:
        raise ConfigError(f"{field}: {exc}", [(field, str(exc))]) from exc
    return url


def add_target(
    session: Session, url: str, events: Sequence[str] = DEFAULT_NOTIFY_EVENTS, label: str = ""
) -> Target:
    """Given a URL, its events and a label, store a global target. Raise ConfigError."""
    now = utcnow()
    row = NotificationTarget(
        url=_url(url),
        events=_events(events),
        label=label.strip()[:200],
        created_at=now,
        updated_at=now,
    )
    repo.add_target(session, row)
    return _of(row)


def _global_row(session: Session, target_id: str) -> NotificationTarget:
    row = repo.get_target(session, target_id)
    if row is None:
        raise NotFoundError(f"notification target {target_id} not found")
    if row.config_id is not None:
        raise ConfigError(
            "this target belongs to a config: edit it in the config's notifications",
            [("url", "edit it in the config's notifications")],
        )
    return row


def update_target(
    session: Session,
    target_id: str,
    *,
    url: str | None = None,
    events: Sequence[str] | None = None,
    label: str | None = None,
) -> Target:
    """Given a global target and what changes (a blank URL keeps it), update it. A new URL
    is a new destination: it is told only of what happens from now on. Raise NotFoundError,
    ConfigError."""
    row = _global_row(session, target_id)
    now = utcnow()
    if url is not None and url.strip() and url.strip() != mask_url(row.url):
        row.url = _url(url)
        row.created_at = now
    if events is not None:
        row.events = _events(events)
    if label is not None:
        row.label = label.strip()[:200]
    row.updated_at = now
    session.flush()
    return _of(row)


def delete_target(session: Session, target_id: str) -> None:
    """Given a global target, delete it. Raise NotFoundError, ConfigError."""
    repo.delete_target(session, _global_row(session, target_id))


def store_config_targets(
    session: Session, config_id: str, spec: NotifySpec | None
) -> NotifySpec | None:
    """Given a config and its ``options.notify``, make its targets those URLs and return the
    spec to store in its document (the URLs masked). A URL equal to the masked form of one
    of its targets keeps that target (and when it was added). Raise ConfigError."""
    existing = repo.config_targets(session, config_id)
    if spec is None:
        for row in existing:
            repo.delete_target(session, row)
        return None
    now = utcnow()
    kept: list[NotificationTarget] = []
    for i, url in enumerate(spec.urls):
        match = next(
            (r for r in existing if r not in kept and url in (r.url, mask_url(r.url))), None
        )
        if match is None:
            match = NotificationTarget(
                config_id=config_id,
                url=_url(url, f"options.notify.urls[{i}]"),
                created_at=now,
                updated_at=now,
                events=[],
            )
            repo.add_target(session, match)
        match.events = list(spec.on)
        match.updated_at = now
        kept.append(match)
    for row in existing:
        if row not in kept:
            repo.delete_target(session, row)
    session.flush()
    return spec.model_copy(update={"urls": [mask_url(r.url) for r in kept]})


def delete_config_targets(session: Session, config_id: str) -> None:
    """Given a deleted config, delete its targets."""
    repo.delete_config_targets(session, config_id)


def send_test(target: Target, who: str, base_url: str = "") -> None:
    """Given a target and who asks, send it a test message now. Raise TransportError."""
    where = f"\nBackApp: {base_url.rstrip('/')}/" if base_url else ""
    note = Notification(
        title="BackApp: test message",
        body=(
            f"A test message from BackApp, sent by {who} at "
            f"{utcnow():%Y-%m-%d %H:%M:%S} UTC to {target.masked}.{where}"
        ),
        severity="info",
    )
    build_transport(target.url).send(note)
