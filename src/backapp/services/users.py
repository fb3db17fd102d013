"""Users, passwords (Argon2), API tokens and browser sessions."""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from backapp.db import ApiToken, Session, User, WebSession, utcnow
from backapp.db.repositories import users as repo
from backapp.errors import ConfigError, ConflictError, NotFoundError
from backapp.services.logins import LoginGuard

logger = logging.getLogger(__name__)

# What each role may do: "watch" (configs, runs, alerts, statistics, lists of backups),
# "operate" (run, cancel, verify, browse and download file content, restore, acknowledge)
# and "manage" (configs, destinations, users). The one table the API and pages ask.
PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": frozenset({"watch", "operate", "manage"}),
    "operator": frozenset({"watch", "operate"}),
    "viewer": frozenset({"watch"}),
}
ROLES = tuple(PERMISSIONS)
SESSION_COOKIE = "backapp_session"  # the browser session, shared by the API and the web UI
SESSION_LIFETIME = timedelta(days=7)
TOKEN_USE_EVERY = timedelta(minutes=5)  # how finely a token's last use is recorded
_hasher = PasswordHasher()
# Verifying against this keeps unknown usernames as slow as wrong passwords.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


@dataclass(frozen=True)
class Identity:
    """Who is making a request, and how they proved it."""

    user_id: str
    username: str
    role: str
    via: str  # "session" | "token"
    csrf_token: str | None = None

    def may(self, action: str) -> bool:
        """Given "watch", "operate" or "manage", return whether this identity may."""
        return action in PERMISSIONS.get(self.role, frozenset())

    @property
    def is_admin(self) -> bool:
        """Return whether this identity may manage configs, destinations and users."""
        return self.may("manage")

    @property
    def can_operate(self) -> bool:
        """Return whether this identity may run, restore and read backed-up content."""
        return self.may("operate")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_user(session: Session, username: str, password: str, role: str) -> User:
    """Given a name, password and role, create the user. Raise ConfigError, ConflictError."""
    username = username.strip()
    if not username or len(username) > 150:
        raise ConfigError("username must be 1 to 150 characters", [("username", "invalid")])
    if role not in ROLES:
        raise ConfigError(f"role must be one of {', '.join(ROLES)}", [("role", "invalid")])
    if len(password) < 8:
        raise ConfigError("password must be at least 8 characters", [("password", "too short")])
    if repo.get_by_name(session, username) is not None:
        raise ConflictError(f"user {username!r} already exists")
    user = User(username=username, password_hash=_hasher.hash(password), role=role)
    repo.add(session, user)
    return user


def log_in(
    session: Session, guard: LoginGuard, username: str, password: str, address: str
) -> User | None:
    """Given credentials and where they come from, return the user if the password
    matches, else None; attempts are counted and limited (see services/logins.py).
    Raise TooManyAttemptsError."""
    guard.check(username, address)
    with guard.hashing():
        user = authenticate(session, username, password)
    if user is None:
        guard.failed(username, address)
    else:
        guard.succeeded(username)
    return user


def authenticate(session: Session, username: str, password: str) -> User | None:
    """Given credentials, return the user if the password matches, else None."""
    user = repo.get_by_name(session, username)
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return user


def create_token(session: Session, username: str, name: str = "") -> tuple[str, ApiToken]:
    """Given a username, create an API token; return (the token, shown once; its row)."""
    user = repo.get_by_name(session, username)
    if user is None:
        raise NotFoundError(f"no user named {username!r}")
    token = "bk_" + secrets.token_urlsafe(32)
    row = ApiToken(user_id=user.id, name=name, token_hash=_digest(token), prefix=token[:10])
    repo.add(session, row)
    return token, row


def identity_for_token(session: Session, token: str, *, record_use: bool = True) -> Identity | None:
    """Given a bearer token, return who it belongs to, or None. With ``record_use`` the
    token's last use is also recorded (a write, at most every TOKEN_USE_EVERY)."""
    found = repo.token_and_user(session, _digest(token))
    if found is None:
        return None
    row, user = found
    if record_use:
        _record_use(row)
    return Identity(user.id, user.username, user.role, "token")


def record_token_use(session: Session, token: str) -> None:
    """Given a bearer token, record that it was used now (unless recorded lately)."""
    row = repo.token_by_hash(session, _digest(token))
    if row is not None:
        _record_use(row)


def _record_use(row: ApiToken) -> None:
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at > TOKEN_USE_EVERY:
        row.last_used_at = now


_claims_lock = threading.Lock()
_claims: dict[str, float] = {}  # digest of a valid token -> when this process last claimed it


def claim_token_use(token: str) -> bool:
    """Given a valid bearer token, return whether this request should record its use: true
    for one request per token and TOKEN_USE_EVERY in this process (read-only requests
    then record it in a short write of their own instead of locking for every request)."""
    digest, now = _digest(token), time.monotonic()
    with _claims_lock:
        last = _claims.get(digest)
        if last is not None and now - last < TOKEN_USE_EVERY.total_seconds():
            return False
        _claims[digest] = now
        return True


def open_session(session: Session, user: User) -> tuple[str, str]:
    """Given a user, start a browser session; return (cookie value, CSRF token)."""
    cookie = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    now = utcnow()
    repo.purge_sessions(session, now)
    repo.add(
        session,
        WebSession(
            user_id=user.id,
            token_hash=_digest(cookie),
            csrf_token=csrf,
            expires_at=now + SESSION_LIFETIME,
        ),
    )
    return cookie, csrf


def identity_for_session(session: Session, cookie: str) -> Identity | None:
    """Given a session cookie, return who it belongs to, or None if unknown or expired."""
    found = repo.session_and_user(session, _digest(cookie))
    if found is None or found[0].expires_at < utcnow():
        return None
    row, user = found
    return Identity(user.id, user.username, user.role, "session", row.csrf_token)


def close_session(session: Session, cookie: str) -> None:
    """Given a session cookie, end that session."""
    row = repo.session_by_hash(session, _digest(cookie))
    if row is not None:
        repo.delete_session(session, row)


def ensure_admin(session: Session, password: str | None) -> str | None:
    """Create the first admin if there are no users; return the generated password, if any.

    With ``password`` given (BACKAPP_ADMIN_PASSWORD) it is used and nothing is returned.
    """
    if repo.count_users(session) > 0:
        return None
    generated = None
    if not password:
        generated = password = secrets.token_urlsafe(12)
    create_user(session, "admin", password, "admin")
    logger.info("created the first user, 'admin'")
    return generated
