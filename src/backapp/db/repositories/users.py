"""Queries on users, API tokens and web sessions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.orm import Session

from backapp.db.models import ApiToken, User, WebSession
from backapp.db.repositories import storable


def count_users(session: Session) -> int:
    """Return how many users exist."""
    return int(session.scalar(select(func.count()).select_from(User)) or 0)


def get_by_name(session: Session, username: str) -> User | None:
    """Given a username, return the user or None."""
    if not storable(username):
        return None
    return session.scalar(select(User).where(User.username == username))


def get(session: Session, user_id: str) -> User | None:
    """Given a user id, return the user or None."""
    return session.get(User, user_id)


def add(session: Session, obj: User | ApiToken | WebSession) -> None:
    """Given a new row, add it and flush (so its defaults are set)."""
    session.add(obj)
    session.flush()


def token_by_hash(session: Session, token_hash: str) -> ApiToken | None:
    """Given a token hash, return the token row or None."""
    return session.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash))


# Every request runs one of these: built once, so only their parameter changes.
_TOKEN_AND_USER = (
    select(ApiToken, User)
    .join(User, User.id == ApiToken.user_id)
    .where(ApiToken.token_hash == bindparam("token_hash"))
)
_SESSION_AND_USER = (
    select(WebSession, User)
    .join(User, User.id == WebSession.user_id)
    .where(WebSession.token_hash == bindparam("token_hash"))
)


def token_and_user(session: Session, token_hash: str) -> tuple[ApiToken, User] | None:
    """Given a token hash, return the token row and its user in one query, or None."""
    row = session.execute(_TOKEN_AND_USER, {"token_hash": token_hash}).first()
    return (row[0], row[1]) if row is not None else None


def session_and_user(session: Session, token_hash: str) -> tuple[WebSession, User] | None:
    """Given a session cookie hash, return the session row and its user in one query."""
    row = session.execute(_SESSION_AND_USER, {"token_hash": token_hash}).first()
    return (row[0], row[1]) if row is not None else None


def session_by_hash(session: Session, token_hash: str) -> WebSession | None:
    """Given a session cookie hash, return the session row or None."""
    return session.scalar(select(WebSession).where(WebSession.token_hash == token_hash))


def delete_session(session: Session, web_session: WebSession) -> None:
    """Given a session row, delete it."""
    session.delete(web_session)


def purge_sessions(session: Session, now: datetime) -> None:
    """Delete sessions that expired before now."""
    session.execute(delete(WebSession).where(WebSession.expires_at < now))
