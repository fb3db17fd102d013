"""Persistence: SQLAlchemy models, repositories (all queries) and migrations."""

from sqlalchemy.orm import Session

from backapp.db.models import (
    Alert,
    ApiToken,
    Config,
    NotificationEvent,
    NotificationTarget,
    Run,
    User,
    WebSession,
    utcnow,
)
from backapp.db.session import Database
from backapp.errors import DatabaseError

__all__ = [
    "Alert",
    "ApiToken",
    "Config",
    "Database",
    "DatabaseError",
    "NotificationEvent",
    "NotificationTarget",
    "Run",
    "Session",
    "User",
    "WebSession",
    "utcnow",
]
