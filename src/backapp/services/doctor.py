"""``backapp doctor``: check the settings, the database, the encryption key and every
config's destination, and say what is wrong in the words of the README's Troubleshooting.

Each check gives Findings; a problem names its Troubleshooting entry (``topic``), so the
README explains every message doctor prints (a test holds them together).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import ValidationError

from backapp.db import Database
from backapp.db.schema import open_database, schema_state, sqlite_file
from backapp.domain.config import BackupConfig, LocalDestination, S3Destination
from backapp.engine.format.crypto import HEADER_SIZE, MasterKey, key_matches
from backapp.engine.format.layout import BackupInfo, Repository, SealedBackupError
from backapp.errors import (
    BackappError,
    BackupNotFoundError,
    ConfigError,
    DatabaseError,
    EncryptionKeyError,
    IntegrityError,
    StorageConnectionError,
    StorageCredentialsError,
    StorageError,
    StoragePermissionError,
    TamperedError,
    WrongKeyError,
)
from backapp.services import configs as config_service
from backapp.services.context import AppContext
from backapp.services.identity import StoredConfig
from backapp.settings import Settings
from backapp.storage import Storage, join_key
from backapp.storage.factory import open_storage

Status = Literal["ok", "problem", "note"]

# The Troubleshooting entries of README.md that doctor's problems point to.
T_SETTING = "Invalid setting"
T_FILE_UNREADABLE = "Cannot read a secret file"
T_DATABASE = "cannot reach the database"
T_DATABASE_FILE = "The database file does not exist"
T_SCHEMA_OLD = "The database schema is out of date"
T_SCHEMA_NEW = "The database was migrated by a newer BackApp"
T_KEY_MISSING = "encryption is enabled but BACKUP_ENCRYPTION_KEY is not set"
T_KEY_BAD = "BACKUP_ENCRYPTION_KEY is not valid"
T_WRONG_KEY = "encrypted with a different key"
T_CREDENTIALS = "AWS credentials not configured"
T_CONNECT = "Failed to connect to S3 bucket"
T_DENIED = "Access denied / Permission denied"
T_STORAGE = "Cannot create / write / read at the destination"
T_PROBE = "The probe object read back differently"
T_SKEW = "Clock skew"
T_UNREADABLE = "The newest backup cannot be read"
T_CONFIG = "A stored config is invalid"
TOPICS = (
    T_SETTING,
    T_FILE_UNREADABLE,
    T_DATABASE,
    T_DATABASE_FILE,
    T_SCHEMA_OLD,
    T_SCHEMA_NEW,
    T_KEY_MISSING,
    T_KEY_BAD,
    T_WRONG_KEY,
    T_CREDENTIALS,
    T_CONNECT,
    T_DENIED,
    T_STORAGE,
    T_PROBE,
    T_SKEW,
    T_UNREADABLE,
    T_CONFIG,
)

SKEW_LIMIT = 60.0  # seconds; S3 refuses requests beyond 15 minutes, schedules drift sooner
_PROBE = b"backapp doctor probe\n"


@dataclass(frozen=True)
class Finding:
    """One thing doctor looked at: what, how it went, and (a problem) its Troubleshooting."""

    subject: str
    status: Status
    message: str
    topic: str | None = None

    @property
    def problem(self) -> bool:
        """Whether this finding is something wrong."""
        return self.status == "problem"


def _ok(subject: str, message: str) -> Finding:
    return Finding(subject, "ok", message)


def _note(subject: str, message: str) -> Finding:
    return Finding(subject, "note", message)


def _problem(subject: str, message: str, topic: str) -> Finding:
    return Finding(subject, "problem", message, topic)


def load_settings() -> tuple[Settings | None, Finding]:
    """Read the settings from the environment; return them (None if invalid) and how it went."""
    try:
        settings = Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(p) for p in first["loc"]) or "settings"
        return None, _problem("settings", f"Invalid setting {name}: {first['msg']}", T_SETTING)
    except OSError as exc:  # a <NAME>_FILE that cannot be read
        where = exc.filename or "a secret file"
        reason = exc.strerror or str(exc)
        message = f"Cannot read a secret file: {where}: {reason}"
        return None, _problem("settings", message, T_FILE_UNREADABLE)
    return settings, _ok("settings", "read from the environment")


def check_key(settings: Settings) -> tuple[MasterKey | None, Finding]:
    """Given settings, return the encryption key (None if unset or invalid) and how it went."""
    secret = settings.backup_encryption_key
    try:
        key = MasterKey.configured(secret.get_secret_value() if secret else None, required=False)
    except EncryptionKeyError as exc:
        return None, _problem("encryption key", exc.message, T_KEY_BAD)
    if key is None:
        return None, _note("encryption key", "BACKUP_ENCRYPTION_KEY is not set")
    return key, _ok("encryption key", "BACKUP_ENCRYPTION_KEY is set and well-formed")


def check_database(url: str) -> tuple[Database | None, list[Finding]]:
    """Given DATABASE_URL, check the database answers and its schema is current, changing
    nothing; return the database (None if unusable) and what was found."""
    try:
        path = sqlite_file(url)
        db = open_database(url) if path is None or path.exists() else None
    except ConfigError as exc:
        return None, [_problem("database", f"Invalid setting {exc.message}", T_SETTING)]
    if db is None:
        message = (
            f"The database file does not exist: {path} (start BackApp once, or run "
            "`backapp db upgrade`; is DATABASE_URL right?)"
        )
        return None, [_problem("database", message, T_DATABASE_FILE)]
    return db, _check_schema(db)


def _check_schema(db: Database) -> list[Finding]:
    subject = f"database {db.description}"
    try:
        state = schema_state(db)
    except DatabaseError as exc:
        return [_problem(subject, exc.message, T_DATABASE)]
    if not state.known:
        message = (
            f"The database was migrated by a newer BackApp (revision {state.current}; this "
            f"one knows up to {state.head}): upgrade BackApp"
        )
        return [_problem(subject, message, T_SCHEMA_NEW)]
    if not state.up_to_date:
        message = (
            f"The database schema is out of date (revision {state.current or 'none'}, this "
            f"BackApp needs {state.head}): run `backapp db upgrade` (every start does it too)"
        )
        return [_problem(subject, message, T_SCHEMA_OLD)]
    return [_ok(subject, f"reachable, schema current (revision {state.head})")]


def stored_configs(ctx: AppContext, only: str | None = None) -> list[StoredConfig]:
    """Given the context (and a config's name or id), return the configs to check.
    Raise NotFoundError, ConfigError, DatabaseError."""
    with ctx.db.session(read_only=True) as session:
        if only is not None:
            return [config_service.identity_of(config_service.find(session, only))]
        found = []
        for config in config_service.list_all(session):
            try:
                found.append(config_service.identity_of(config))
            except ConfigError:
                continue  # reported by check_config_document
        return found


def check_config(
    settings: Settings,
    identity: StoredConfig,
    key: MasterKey | None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[Finding]:
    """Given a config, its key and a clock, check its key and destination: reachable,
    a probe object written, read and deleted under its prefix, the clock against the
    store's, and whether the key opens its newest backup."""
    config = identity.document
    subject = f"config '{config.name}'"
    findings: list[Finding] = []
    if config.options.encryption and key is None:
        message = (
            "encryption is enabled but BACKUP_ENCRYPTION_KEY is not set (its backups "
            "cannot be made or restored)"
        )
        findings.append(_problem(subject, message, T_KEY_MISSING))
    # No retries: a person is waiting, and an unreachable store should say so at once.
    storage = open_storage(
        config.destination, default_endpoint=settings.aws_s3_endpoint, retry=False
    )
    where = _where(config.destination)
    master = key if config.options.encryption else None
    repository = Repository(storage, config.destination.prefix, identity.slug, master)
    try:
        findings.append(_probe(subject, storage, config, where, clock))
        for finding in _check_newest(subject, repository, key):
            if finding.topic == T_KEY_MISSING and any(f.topic == T_KEY_MISSING for f in findings):
                continue  # said once per config
            findings.append(finding)
    except StorageError as exc:
        findings.append(_problem(f"{subject} → {where}", exc.message, _storage_topic(exc)))
    return findings


def _where(destination: S3Destination | LocalDestination) -> str:
    if isinstance(destination, LocalDestination):
        return destination.path
    endpoint = f" at {destination.endpoint}" if destination.endpoint else ""
    return f"s3://{destination.bucket}{endpoint}"


def _probe(
    subject: str,
    storage: Storage,
    config: BackupConfig,
    where: str,
    clock: Callable[[], datetime],
) -> Finding:
    """Write, read back, stat and delete a small object under the prefix. Raise StorageError."""
    key = join_key(config.destination.prefix, f".backapp-doctor-{secrets.token_hex(6)}")
    before = clock()
    began = time.monotonic()
    storage.put_bytes(key, _PROBE)
    local = before.timestamp() + (time.monotonic() - began) / 2
    try:
        data = storage.get_bytes(key)
        info = storage.head(key)
    finally:
        storage.delete(key)
    subject = f"{subject} → {where}"
    if data != _PROBE:
        message = f"The probe object read back differently from {where} ({len(data)} bytes)"
        return _problem(subject, message, T_PROBE)
    if storage.head(key) is not None:
        return _problem(
            subject,
            f"Permission denied: the probe object {key} could not be deleted from {where}",
            T_DENIED,
        )
    skew = (info.modified.timestamp() - local) if info and info.modified else None
    if skew is not None and abs(skew) > SKEW_LIMIT:
        ahead = "behind" if skew > 0 else "ahead of"
        message = (
            f"Clock skew: this machine's clock is {abs(skew):.0f} s {ahead} the clock of "
            f"{where} (synchronise it with NTP: S3 refuses requests beyond 15 minutes, and "
            "schedules, retention and lock ages go wrong sooner)"
        )
        return _problem(subject, message, T_SKEW)
    told = f"; clocks agree within {abs(skew):.0f} s" if skew is not None else ""
    return _ok(subject, f"reachable; a probe was written, read and deleted{told}")


def _check_newest(subject: str, repository: Repository, key: MasterKey | None) -> Iterable[Finding]:
    """Given a config's repository (opened with its key) and the key, say whether its
    newest backup can be read and the key opens it. Raise StorageError."""
    ids = repository.ids()
    if not ids:
        yield _note(subject, "no backups yet")
        return
    newest = ids[-1]
    try:
        info = _load(repository, newest, key)
    except SealedBackupError:
        message = (
            f"encryption is enabled but BACKUP_ENCRYPTION_KEY is not set: the newest "
            f"backup {newest} is encrypted"
        )
        yield _problem(subject, message, T_KEY_MISSING)
        return
    except WrongKeyError:
        yield _problem(subject, _wrong_key(newest), T_WRONG_KEY)  # its marker's key check
        return
    except (IntegrityError, BackupNotFoundError) as exc:
        # A wrong key fails every backup's marker; damage fails one: look at two more.
        if (
            key is not None
            and isinstance(exc, TamperedError)
            and not _any_opens(repository, ids[-3:-1], key)
        ):
            yield _problem(subject, _wrong_key(newest), T_WRONG_KEY)
        else:
            yield _problem(subject, f"The newest backup cannot be read: {exc}", T_UNREADABLE)
        return
    if not info.encrypted:
        yield _ok(subject, f"newest backup {newest} (not encrypted)")
        return
    if key is None:
        message = (
            f"encryption is enabled but BACKUP_ENCRYPTION_KEY is not set: the newest "
            f"backup {newest} is encrypted"
        )
        yield _problem(subject, message, T_KEY_MISSING)
        return
    # Format 2: the key opened the sealed marker. Format 1: the manifest's key check.
    matches = True if info.manifest is None else _key_opens(repository, info, key)
    if matches is None:
        message = f"The newest backup cannot be read: {newest}'s manifest header is damaged"
        yield _problem(subject, message, T_UNREADABLE)
    elif not matches:
        yield _problem(subject, _wrong_key(newest), T_WRONG_KEY)
    else:
        yield _ok(subject, f"the key opens the newest backup {newest}")


def _wrong_key(backup_id: str) -> str:
    return (
        f"the newest backup {backup_id} was encrypted with a different key: "
        "BACKUP_ENCRYPTION_KEY is not the key it was made with"
    )


def _load(repository: Repository, backup_id: str, key: MasterKey | None) -> BackupInfo:
    """Load a backup's marker; a config whose encryption was turned off may still hold
    encrypted backups: those are opened with the key. Raise as Repository.load."""
    try:
        return repository.load(backup_id)
    except SealedBackupError:
        if key is None or repository.master is not None:
            raise
        return repository.with_key(key).load(backup_id)


def _any_opens(repository: Repository, backup_ids: list[str], key: MasterKey) -> bool:
    for backup_id in backup_ids:
        try:
            _load(repository, backup_id, key)
            return True
        except (IntegrityError, BackupNotFoundError, EncryptionKeyError):
            continue
    return False


def _key_opens(repository: Repository, info: BackupInfo, key: MasterKey) -> bool | None:
    """Given an encrypted backup's info, return whether the key is the one it was made
    with, from the key check in its manifest's header (64 bytes: cheap); None when the
    header cannot be parsed. Raise StorageError."""
    manifest = info.manifest
    if manifest is None:
        return None
    object_key = repository.key(info.backup_id, manifest.name)
    header = b"".join(repository.storage.get(object_key, 0, HEADER_SIZE))
    return key_matches(key, header)


def _storage_topic(exc: StorageError) -> str:
    if isinstance(exc, StorageCredentialsError):
        return T_CREDENTIALS
    if isinstance(exc, StorageConnectionError):
        return T_CONNECT
    if isinstance(exc, StoragePermissionError):
        return T_DENIED
    return T_STORAGE


def check_documents(ctx: AppContext) -> list[Finding]:
    """Given the context, report stored configs whose document no longer validates."""
    findings = []
    with ctx.db.session(read_only=True) as session:
        for config in config_service.list_all(session):
            try:
                config_service.identity_of(config)
            except BackappError as exc:
                message = f"A stored config is invalid: {exc}"
                findings.append(_problem(f"config '{config.name}'", message, T_CONFIG))
    return findings
