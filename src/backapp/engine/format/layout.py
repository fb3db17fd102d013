"""Where a config's backups live in storage, and the commit marker ``backup.json``.

    {prefix}/{config-slug}/{backup-id}/backup.json                 commit marker, JSON
    {prefix}/{config-slug}/packs/{nn}/{pack}                       format 2: blocks, packed
    {prefix}/{config-slug}/index/{index}                           format 2: where blocks lie
    {prefix}/{config-slug}/{backup-id}/manifest.json.gz[.enc]     format 1: the entries
    {prefix}/{config-slug}/{backup-id}/data.tar.gz[.enc]           format 1: the archive

A backup exists only once its ``backup.json`` exists: it is written last, and
deleted first.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from backapp.engine.format.crypto import MasterKey
from backapp.engine.format.keys import FolderKeys
from backapp.engine.format.marker import marker_bytes, open_marker, public_part
from backapp.errors import (
    ArchiveError,
    BackupNotFoundError,
    EncryptionKeyError,
    IntegrityError,
    ObjectNotFoundError,
    StorageError,
    UnsupportedFormatError,
)
from backapp.storage import Storage, join_key

MARKER = "backup.json"
MAX_MARKER = 1024 * 1024  # a real one is a few KiB
FORMAT_VERSION = 2
FORMAT_VERSIONS = (1, 2)
_ID_RE = re.compile(r"^\d{8}T\d{6}(\.\d{3})?Z-[0-9a-f]{6}$")


def new_backup_id(now: datetime | None = None) -> str:
    """Given a moment (default now), return a backup id that sorts by time."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    # Milliseconds keep two backups made within one second in order ("latest" is the last).
    return f"{moment:%Y%m%dT%H%M%S}.{moment.microsecond // 1000:03d}Z-{secrets.token_hex(3)}"


def is_backup_id(value: str) -> bool:
    """Given a string, return whether it has the shape of a backup id."""
    return bool(_ID_RE.match(value))


class _Doc(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


_OBJECT_NAMES = frozenset(
    f"{base}{enc}"
    for base in ("manifest.json.gz", "data.tar", "data.tar.gz", "data.tar.zst")
    for enc in ("", ".enc")
)


class StoredObject(_Doc):
    """An object of a backup: its name inside the backup folder and its size."""

    name: str
    size: int = Field(ge=0)
    plain_size: int | None = Field(default=None, ge=0)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        # Only the names BackApp writes: a name is joined into a storage key.
        if value not in _OBJECT_NAMES:
            raise ValueError(f"unknown object name {value!r}")
        return value


class CompressionInfo(_Doc):
    """How the archive was compressed: algorithm, level and block size."""

    algorithm: Literal["gzip", "zstd", "none"]
    level: int | None = None
    block_size: int = Field(gt=0, le=2**31)


class BackupStats(_Doc):
    """What a backup holds and what it cost."""

    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    total_bytes: int = 0
    new_files: int = 0
    changed_files: int = 0
    unchanged_files: int = 0
    renamed_files: int = 0
    deleted_files: int = 0
    files_skipped: int = 0
    data_bytes: int = 0
    stored_bytes: int = 0


class BackupInfo(_Doc):
    """The content of ``backup.json``: one committed backup."""

    format_version: int = FORMAT_VERSION
    backup_id: str
    config_name: str
    config_slug: str
    type: Literal["full", "incremental"]
    parent: str | None = None
    chain: int = 0
    requires: list[str] = Field(default_factory=list)
    created_at: datetime
    completed_at: datetime
    encrypted: bool
    compression: CompressionInfo
    manifest: StoredObject | None = None  # format 1
    data: StoredObject | None = None  # format 1
    manifest_blocks: list[tuple[str, int]] | None = None  # format 2: the manifest's blocks
    tar_size: int = 0  # format 2: bytes of the tar stream its blocks make
    stored_bytes: int = 0  # format 2: bytes this backup added to storage
    stats: BackupStats
    sources: list[str]
    host: str = ""
    tool: str = ""

    @field_validator("backup_id")
    @classmethod
    def _backup_id(cls, value: str) -> str:
        if not is_backup_id(value):
            raise ValueError(f"{value!r} is not a backup id")
        return value

    @field_validator("parent")
    @classmethod
    def _parent(cls, value: str | None) -> str | None:
        if value is not None and not is_backup_id(value):
            raise ValueError(f"parent {value!r} is not a backup id")
        return value

    @field_validator("requires")
    @classmethod
    def _requires(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not is_backup_id(v)]
        if bad:
            raise ValueError(f"requires {bad[0]!r}, which is not a backup id")
        return value

    def to_bytes(self, keys: FolderKeys | None = None) -> bytes:
        """Return the JSON document stored as ``backup.json`` (format 2: sealed with the
        folder's keys, so two calls give different bytes when encrypted)."""
        doc = self.model_dump(mode="json", by_alias=True)
        if self.format_version >= 2:
            assert keys is not None
            return marker_bytes(keys, self.backup_id, doc)
        return (json.dumps(doc, indent=2, sort_keys=False) + "\n").encode()


class SealedBackupError(EncryptionKeyError):
    """A format-2 backup is encrypted and no key was given: only its public part is known."""

    def __init__(self, message: str, public: dict[str, object]) -> None:
        super().__init__(message)
        self.public = public


def parse_marker(raw: bytes, backup_id: str, keys: FolderKeys | None = None) -> BackupInfo:
    """Given the bytes of a ``backup.json``, the id of its folder (and the folder's keys:
    format 2), return the BackupInfo.

    Raise ArchiveError (damaged, or not this folder's), TamperedError, UnsupportedFormatError,
    SealedBackupError (format 2, encrypted, no key).
    """
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise ArchiveError(f"backup {backup_id}: backup.json is damaged (not JSON)") from None
    if not isinstance(doc, dict):
        raise ArchiveError(f"backup {backup_id}: backup.json is damaged (not an object)")
    version = doc.get("formatVersion")
    if version not in FORMAT_VERSIONS or type(version) is not int:
        raise UnsupportedFormatError(
            f"backup {backup_id} has storage format {version!r}; this BackApp reads formats "
            "1 and 2 (was it written by a newer BackApp?)"
        )
    if version == 2:
        try:
            doc = open_marker(keys, backup_id, doc)
        except EncryptionKeyError as exc:
            raise SealedBackupError(str(exc), public_part(doc)) from None
        if doc.get("formatVersion") != 2:
            raise ArchiveError(f"backup {backup_id}: backup.json is damaged (formatVersion)")
    try:
        info = BackupInfo.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ArchiveError(
            f"backup {backup_id}: backup.json is damaged ({where}: {first['msg']})"
        ) from None
    if info.backup_id != backup_id:
        raise ArchiveError(
            f"backup {backup_id}: backup.json describes backup {info.backup_id} "
            "(moved or copied from another folder)"
        )
    if version == 2 and keys is not None and info.config_slug != keys.slug:
        raise ArchiveError(
            f"backup {backup_id}: backup.json belongs to config folder {info.config_slug!r}, "
            f"not {keys.slug!r} (moved or copied from another config)"
        )
    if version == 2 and info.manifest_blocks is None:
        raise ArchiveError(f"backup {backup_id}: backup.json names no manifest")
    if version == 1 and (info.manifest is None or info.data is None):
        raise ArchiveError(f"backup {backup_id}: backup.json names no manifest or archive")
    return info


@dataclass(frozen=True)
class ListedBackup:
    """A committed backup as listed: its info, or why its backup.json cannot be read."""

    backup_id: str
    info: BackupInfo | None
    problem: str | None
    public: dict[str, object] | None = None  # format 2 without the key: ids, times, sizes


class Repository:
    """The backups of one config in one storage, under ``{prefix}/{slug}``."""

    def __init__(
        self, storage: Storage, prefix: str, slug: str, master: MasterKey | None = None
    ) -> None:
        self.storage = storage
        self.base = join_key(prefix, slug)
        self.slug = slug
        self.master = master
        self.keys = FolderKeys.derive(master, slug)

    def keys_for(self, info: BackupInfo) -> FolderKeys:
        """Given a backup of this folder, return the keys its objects are sealed with (an
        unencrypted backup's are plain, whatever key this repository was opened with)."""
        return self.keys if info.encrypted else FolderKeys(self.slug)

    def with_key(self, master: MasterKey | None) -> Repository:
        """Given the key (None: none), return this repository opened with it (itself if
        it was opened with it already)."""
        if master is self.master or master is None:
            return self
        repo = Repository(self.storage, "", self.slug, master)
        repo.base = self.base
        return repo

    @property
    def location(self) -> str:
        """Return where the backups live, for messages."""
        return f"{self.storage.description}/{self.base}"

    def key(self, backup_id: str, name: str) -> str:
        """Given a backup id and an object name, return the object's storage key."""
        return join_key(self.base, backup_id, name)

    def ids(self) -> list[str]:
        """Return the ids of committed backups, oldest first."""
        found = []
        for obj in self.storage.list(self.base + "/"):
            rest = obj.key[len(self.base) + 1 :]
            parts = rest.split("/")
            if len(parts) == 2 and parts[1] == MARKER and is_backup_id(parts[0]):
                found.append(parts[0])
        return sorted(found)

    def load(self, backup_id: str) -> BackupInfo:
        """Given a backup id, return its BackupInfo.

        Raise BackupNotFoundError, ArchiveError (damaged), UnsupportedFormatError.
        """
        try:
            raw = b"".join(self.storage.get(self.key(backup_id, MARKER), 0, MAX_MARKER + 1))
        except ObjectNotFoundError as exc:
            raise BackupNotFoundError(f"backup {backup_id} not found in {self.location}") from exc
        if len(raw) > MAX_MARKER:
            raise ArchiveError(f"backup {backup_id}: backup.json is damaged (far too large)")
        return parse_marker(raw, backup_id, self.keys)

    def scan(self) -> list[ListedBackup]:
        """Return every committed backup, oldest first, each with its info or its problem."""
        found = []
        for backup_id in self.ids():
            try:
                found.append(ListedBackup(backup_id, self.load(backup_id), None))
            except SealedBackupError as exc:
                found.append(ListedBackup(backup_id, None, str(exc), exc.public))
            except (IntegrityError, BackupNotFoundError) as exc:
                found.append(ListedBackup(backup_id, None, str(exc)))
        return found

    def list(self) -> list[BackupInfo]:
        """Return every committed backup that can be read, oldest first."""
        return [b.info for b in self.scan() if b.info is not None]

    def resolve(self, ref: str) -> str:
        """Given 'latest', an id or a unique id prefix, return the id. Raise BackupNotFoundError."""
        ids = self.ids()
        if not ids:
            raise BackupNotFoundError(f"no backups in {self.location}")
        if ref == "latest":
            return ids[-1]
        if ref in ids:
            return ref
        matches = [i for i in ids if i.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise BackupNotFoundError(f"backup id {ref!r} is ambiguous: {', '.join(matches)}")
        raise BackupNotFoundError(f"backup {ref!r} not found in {self.location}")

    def marker(self, info: BackupInfo) -> bytes:
        """Given a finished backup's info, return the bytes of its commit marker."""
        return info.to_bytes(self.keys)

    def commit(self, info: BackupInfo, marker: bytes) -> None:
        """Given a finished backup's info and its marker's bytes, write the marker (the
        last write)."""
        self.storage.put_bytes(self.key(info.backup_id, MARKER), marker)

    def holds_marker(self, info: BackupInfo, marker: bytes) -> bool | None:
        """Given a backup's info and its marker's bytes, return whether storage holds
        exactly that marker (used when the reply to writing it was lost); None if storage
        cannot say now."""
        try:
            return self.storage.get_bytes(self.key(info.backup_id, MARKER)) == marker
        except ObjectNotFoundError:
            return False
        except StorageError:
            return None

    def delete(self, backup_id: str) -> int:
        """Given a backup id, delete it, marker first; return the number of objects removed."""
        marker = self.key(backup_id, MARKER)
        self.storage.delete(marker)
        removed = 1
        for obj in list(self.storage.list(join_key(self.base, backup_id) + "/")):
            self.storage.delete(obj.key)
            removed += 1
        self.storage.abort_incomplete(join_key(self.base, backup_id) + "/")
        return removed

    def abort_unfinished(self) -> int:
        """Abort the unfinished uploads of packs and index objects (a dead run's); only
        while holding the config's lock. Return how many. Raise StorageError."""
        # Not under locks/: another process may be writing its lock this moment (to be
        # refused, or to wait), and a local lock is a temporary file until renamed.
        return sum(
            self.storage.abort_incomplete(join_key(self.base, part) + "/")
            for part in ("packs", "index")
        )

    def remove_leftovers(self) -> tuple[int, int]:
        """Remove what runs that died left behind: unfinished uploads, and the objects of
        backup folders without a commit marker. Only while holding the config's lock (no
        other run is writing). Return (objects removed, bytes freed). Raise StorageError."""
        removed = self.abort_unfinished()
        freed = 0
        folders: dict[str, list[tuple[str, int]]] = {}
        committed = set()
        for obj in self.storage.list(self.base + "/"):
            folder, _, name = obj.key[len(self.base) + 1 :].partition("/")
            if not name or not is_backup_id(folder):
                continue
            if name == MARKER:
                committed.add(folder)
            folders.setdefault(folder, []).append((obj.key, obj.size))
        for folder, objects in folders.items():
            if folder in committed:
                continue
            removed += self.storage.abort_incomplete(join_key(self.base, folder) + "/")
            for key, size in objects:
                self.storage.delete(key)
                removed += 1
                freed += size
        return removed, freed

    def objects(self, backup_id: str) -> Iterator[tuple[str, int]]:
        """Given a backup id, yield (name, size) of the objects in its folder."""
        prefix = join_key(self.base, backup_id) + "/"
        for obj in self.storage.list(prefix):
            yield obj.key[len(prefix) :], obj.size


def newest_per_folder(storage: Storage, prefix: str) -> dict[str, BackupInfo | None]:
    """Given a storage and a destination prefix, return each config folder holding committed
    backups, with its newest readable backup (None when none can be read). Raise
    StorageError."""
    base = join_key(prefix) + "/" if join_key(prefix) else ""
    ids: dict[str, list[str]] = {}
    for obj in storage.list(base):
        parts = obj.key[len(base) :].split("/")
        if len(parts) == 3 and parts[2] == MARKER and is_backup_id(parts[1]):
            ids.setdefault(parts[0], []).append(parts[1])
    found: dict[str, BackupInfo | None] = {}
    for slug, backup_ids in sorted(ids.items()):
        repo = Repository(storage, prefix, slug)
        found[slug] = None
        for backup_id in sorted(backup_ids, reverse=True):
            try:
                found[slug] = repo.load(backup_id)
                break
            except (IntegrityError, BackupNotFoundError, SealedBackupError):
                continue
    return found
