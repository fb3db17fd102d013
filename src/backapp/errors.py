"""The errors BackApp raises, as one tree, and the HTTP status each means (the one table
the API and the pages share; exit codes are the CLI's own).

    BackappError
    ├── ConfigError                 a configuration (file or document) is invalid
    ├── EncryptionKeyError          BACKUP_ENCRYPTION_KEY missing, malformed or too short
    ├── SourceError                 a source directory is missing or not a directory
    │   └── XattrReadError              one entry's extended attributes cannot be read
    │       └── XattrUnsupportedError       the filesystem has none
    ├── StorageError                anything that went wrong talking to storage
    │   ├── StorageCredentialsError     no credentials ("AWS credentials not configured")
    │   ├── StorageConnectionError      unreachable endpoint or bucket
    │   │                               ("Failed to connect to S3 bucket")
    │   ├── StoragePermissionError      the store refused the operation
    │   └── ObjectNotFoundError         an object that should exist does not
    ├── IntegrityError              stored data is damaged or cannot be authenticated
    │   ├── WrongKeyError               the object was encrypted with another key
    │   ├── TamperedError               a segment failed authentication (modified or reordered)
    │   ├── TruncatedError              the object ends before its final segment
    │   ├── ArchiveError                an archive or manifest cannot be parsed
    │   └── UnsupportedFormatError      written in a format this BackApp does not read
    ├── BackupNotFoundError         no backup with that id (or no backup at all)
    ├── RestoreError                a restore was refused (unsafe path, …)
    │   └── TargetNotEmptyError         the target is not empty and overwriting was not allowed
    ├── CancelledError              the run was cancelled on request
    ├── HookError                   a config's hook command failed (a ``before`` one fails its run)
    ├── DatabaseError               the database cannot be reached or used
    ├── NotFoundError               no config, run, alert or user with that id
    ├── ConflictError               the request conflicts with the current state
    │   ├── RepositoryLockedError       another run holds the lock of a config's backups
    │   ├── BackupRequiredError         a backup to forget is still needed by a kept one
    │   ├── PruneRefusedError           prune cannot tell what a backup references
    │   └── DuplicateRunError           the database refused a run (one is active, or fired)
    ├── AuthenticationError         no valid credentials
    │   ├── TooManyAttemptsError        too many failed logins: wait ``retry_after`` seconds
    │   └── LoginRequiredError          a page needs a logged-in browser (sent to log in)
    ├── PermissionDeniedError       valid credentials, but not allowed
    ├── TransportError              a notification could not be sent (``permanent``?)
    └── UsageError                  bad command-line input

Foreign exceptions (botocore, OSError, SQLAlchemy) are translated where they
enter, with ``raise OurError(...) from exc``.
"""

from __future__ import annotations


class BackappError(Exception):
    """Base class of every error BackApp raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(BackappError):
    """Bad command-line input (exit code 2)."""


class TransportError(BackappError):
    """Sending a notification failed; ``permanent`` says whether trying again is pointless."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class ConfigError(BackappError):
    """A configuration is invalid; ``problems`` lists (field path, message) pairs."""

    def __init__(self, message: str, problems: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class EncryptionKeyError(BackappError):
    """The encryption key is missing, malformed or too short."""


class SourceError(BackappError):
    """A source directory cannot be backed up at all."""


class StorageError(BackappError):
    """Storage failed; ``transient`` says whether retrying may help, ``retried`` whether the
    backend has retried it already (a wrapper then does not try again)."""

    transient = False
    retried = False


class StorageCredentialsError(StorageError):
    """No credentials were found for the storage."""


class StorageConnectionError(StorageError):
    """The storage endpoint or bucket cannot be reached."""

    transient = True


class StoragePermissionError(StorageError):
    """The storage refused the operation (access denied)."""


class ObjectNotFoundError(StorageError):
    """An object that should exist is missing."""


class IntegrityError(BackappError):
    """Stored data is damaged or cannot be authenticated."""


class WrongKeyError(IntegrityError):
    """The object was encrypted with a different key."""


class TamperedError(IntegrityError):
    """A segment failed authentication: modified, corrupted or reordered."""


class TruncatedError(IntegrityError):
    """The object ends before its final segment."""


class ArchiveError(IntegrityError):
    """An archive or manifest is malformed."""


class UnsupportedFormatError(IntegrityError):
    """The backup was written in a storage format this BackApp does not know."""


class BackupNotFoundError(BackappError):
    """No backup matches the requested id."""


class RestoreError(BackappError):
    """A restore was refused or could not be completed safely."""


class TargetNotEmptyError(RestoreError):
    """The restore target is not empty and no overwrite policy was chosen."""


class CancelledError(BackappError):
    """The operation was cancelled on request."""


class HookError(BackappError):
    """A hook command of a config failed (exit status, timeout, or it could not start)."""


class DatabaseError(BackappError):
    """The database cannot be reached or used."""


class NotFoundError(BackappError):
    """No object with the requested id."""


class ConflictError(BackappError):
    """The request conflicts with the current state (e.g. a run is already active)."""


class RepositoryLockedError(ConflictError):
    """Another run (process or host) holds the lock of this config's backups."""


class AuthenticationError(BackappError):
    """Missing or invalid credentials."""


class TooManyAttemptsError(AuthenticationError):
    """Too many failed logins (for the account, from the address, or at once)."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermissionDeniedError(BackappError):
    """The user may not do this (e.g. a viewer trying to change something)."""


class XattrReadError(SourceError):
    """The extended attributes of one entry could not be read (the message says why)."""


class XattrUnsupportedError(XattrReadError):
    """The filesystem has no extended attributes."""


class BackupRequiredError(ConflictError):
    """A backup cannot be forgotten: a backup that stays still requires it (its chain)."""


class PruneRefusedError(ConflictError):
    """Prune does not delete: a backup's manifest cannot be read, so what it references
    is not known (a damaged backup, or an encrypted one and no key)."""


class DuplicateRunError(ConflictError):
    """Inserting a run broke a uniqueness rule (an active run, or a fire time, exists)."""


class LoginRequiredError(AuthenticationError):
    """The page needs a logged-in user; the browser is sent to the login page."""


# Each error's HTTP status, most specific first (the API and the pages both answer it).
HTTP_STATUS: tuple[tuple[type[BackappError], int], ...] = (
    (ConfigError, 422),
    (EncryptionKeyError, 422),
    (NotFoundError, 404),
    (BackupNotFoundError, 404),
    (ConflictError, 409),
    (TooManyAttemptsError, 429),
    (AuthenticationError, 401),
    (PermissionDeniedError, 403),
    (StorageError, 502),
    (IntegrityError, 502),
    (TransportError, 502),  # a notification service refused or did not answer
    (DatabaseError, 503),
)


def http_status(exc: BackappError) -> int:
    """Given an error, return the HTTP status it answers (400 for the rest)."""
    for cls, status in HTTP_STATUS:
        if isinstance(exc, cls):
            return status
    return 400
