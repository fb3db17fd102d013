"""A lock per config in its destination, so that only one process at a time writes or
deletes its backups (a CLI run, a scheduler, another BackApp on the same storage).

    {prefix}/{config-slug}/locks/{lock-id}.json     {"host", "pid", "started", ...}

As restic does it: a process writes its own lock object, then lists the locks; if
another live lock is there, it removes its own and stops. A lock is refreshed
(rewritten) every minute while its run goes on; a lock is stale, and removed by
the next process, when it has not been refreshed for ``stale_after`` (10 minutes,
measured on the storage's clock: the modification times it reports), or at once
when it was made on this host by a process that no longer runs (the process id
and its start time both checked, so a reused pid is not mistaken for it).
"""

from __future__ import annotations

import json
import logging
import os
import random
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from backapp.engine.format.layout import Repository
from backapp.errors import RepositoryLockedError, StorageError
from backapp.storage import ObjectInfo, join_key

logger = logging.getLogger(__name__)

LOCKS = "locks"
REFRESH_SECONDS = 60.0
STALE_SECONDS = 600.0


def _process_start(pid: int) -> str | None:
    """Given a pid, return its start time in clock ticks since boot (None: unknown)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its end.
    fields = raw[raw.rfind(b")") + 2 :].split()
    return fields[19].decode() if len(fields) > 19 else None


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class LockHolder:
    """Who holds a lock, as its object says."""

    host: str
    pid: int
    boot: str
    start: str | None
    purpose: str
    backup_id: str | None
    created: str

    def alive_here(self) -> bool | None:
        """Return whether the holding process still runs (None: not this host, cannot say)."""
        if self.host != socket.gethostname():
            return None
        if self.boot and self.boot != _boot_id():
            return False  # this host has rebooted since
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # it exists (someone else's)
        return self.start is None or _process_start(self.pid) in (None, self.start)

    def describe(self) -> str:
        what = self.purpose + (f" of backup {self.backup_id}" if self.backup_id else "")
        return f"{what} on host {self.host} (pid {self.pid}) since {self.created}"


def _holder(doc: Any) -> LockHolder | None:
    if not isinstance(doc, dict):
        return None
    try:
        return LockHolder(
            host=str(doc["host"]),
            pid=int(doc["pid"]),
            boot=str(doc.get("boot", "")),
            start=doc.get("start"),
            purpose=str(doc.get("purpose", "backup")),
            backup_id=doc.get("backupId"),
            created=str(doc.get("created", "")),
        )
    except (KeyError, TypeError, ValueError):
        return None


class RepoLock:
    """The lock of one config's backups; use as a context manager around the work."""

    def __init__(
        self,
        repo: Repository,
        purpose: str,
        backup_id: str | None = None,
        *,
        stale_after: float = STALE_SECONDS,
        refresh_every: float = REFRESH_SECONDS,
        wait: float = 0.0,
    ) -> None:
        self.repo = repo
        self.wait = wait
        self.purpose = purpose
        self.backup_id = backup_id
        self.stale_after = stale_after
        self.refresh_every = refresh_every
        self.lock_id = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(6)}"
        self.key = join_key(repo.base, LOCKS, f"{self.lock_id}.json")
        self.removed_stale: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._created = datetime.now(UTC).isoformat(timespec="seconds")

    def __enter__(self) -> RepoLock:
        self.acquire(wait=self.wait)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _document(self) -> bytes:
        pid = os.getpid()
        doc = {
            "lockId": self.lock_id,
            "host": socket.gethostname(),
            "pid": pid,
            "boot": _boot_id(),
            "start": _process_start(pid),
            "purpose": self.purpose,
            "backupId": self.backup_id,
            "created": self._created,
            "refreshed": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        return json.dumps(doc).encode()

    def acquire(self, attempts: int = 3, wait: float = 0.0) -> None:
        """Take the lock, removing stale ones; while another live lock holds it, try again
        for up to ``wait`` seconds. Raise RepositoryLockedError, StorageError."""
        deadline = time.monotonic() + wait
        while True:
            try:
                self._acquire(attempts)
                return
            except RepositoryLockedError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(min(2.0, max(0.1, deadline - time.monotonic())))

    def _acquire(self, attempts: int) -> None:
        blocker: LockHolder | None = None
        for attempt in range(attempts):
            self.repo.storage.put_bytes(self.key, self._document())
            try:
                blocker = self._other_live_lock()
            except BaseException:
                self._delete_own()
                raise
            if blocker is None:
                self._start_refreshing()
                return
            self._delete_own()
            if attempt + 1 < attempts:
                time.sleep(random.uniform(0.2, 1.0))  # noqa: S311 - two started together
        assert blocker is not None
        raise RepositoryLockedError(
            f"the backups of this config are locked by another run: {blocker.describe()}; "
            f"if it is not running any more, its lock is removed once it is "
            f"{int(self.stale_after // 60)} minutes old"
        )

    def _other_live_lock(self) -> LockHolder | None:
        prefix = join_key(self.repo.base, LOCKS) + "/"
        locks = list(self.repo.storage.list(prefix))
        mine = next((o for o in locks if o.key == self.key), None)
        now = mine.modified if mine is not None and mine.modified else datetime.now(UTC)
        for obj in locks:
            if obj.key == self.key or not obj.key.endswith(".json"):
                continue
            try:
                holder = _holder(json.loads(_read_small(self.repo, obj.key)))
            except StorageError:
                continue  # released meanwhile
            except (ValueError, RecursionError):
                holder = None
            if self._stale(obj, holder, now):
                self._remove_stale(obj, holder)
                continue
            if holder is None:
                holder = LockHolder("?", 0, "", None, "unreadable lock", None, str(obj.modified))
            return holder
        return None

    def _stale(self, obj: ObjectInfo, holder: LockHolder | None, now: datetime) -> bool:
        if holder is not None and holder.alive_here() is False:
            return True
        if obj.modified is None:
            return False
        return now - obj.modified > timedelta(seconds=self.stale_after)

    def _remove_stale(self, obj: ObjectInfo, holder: LockHolder | None) -> None:
        what = holder.describe() if holder is not None else obj.key
        logger.warning("removing the stale lock of %s", what)
        self.repo.storage.delete(obj.key)
        self.removed_stale.append(what)

    def _start_refreshing(self) -> None:
        self._thread = threading.Thread(target=self._refresh, name="backapp-lock", daemon=True)
        self._thread.start()

    def _refresh(self) -> None:
        while not self._stop.wait(self.refresh_every):
            try:
                self.repo.storage.put_bytes(self.key, self._document())
            except Exception as exc:  # the next refresh tries again; stale only after 10 min
                logger.warning("could not refresh the lock %s: %s", self.key, exc)

    def release(self) -> None:
        """Stop refreshing and remove the lock (never raises)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._delete_own()

    def _delete_own(self) -> None:
        try:
            self.repo.storage.delete(self.key)
        except Exception as exc:  # it goes stale and is removed by the next run
            logger.warning("could not remove the lock %s: %s", self.key, exc)


def _read_small(repo: Repository, key: str) -> bytes:
    """Given a lock's key, return its content (at most 64 KiB: a lock is tiny)."""
    return b"".join(repo.storage.get(key, 0, 64 * 1024))


def release_locks_of(repo: Repository, backup_id: str) -> int:
    """Given a backup whose run is known dead (its worker lost), remove the locks that run
    held; return how many. Raise StorageError."""
    removed = 0
    for obj in list(repo.storage.list(join_key(repo.base, LOCKS) + "/")):
        try:
            holder = _holder(json.loads(_read_small(repo, obj.key)))
        except (StorageError, ValueError, RecursionError):
            continue
        if holder is not None and holder.backup_id == backup_id:
            repo.storage.delete(obj.key)
            removed += 1
    return removed
