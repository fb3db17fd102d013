"""A storage backend on a local folder (or a mounted share).

Each key is a file under the root. A writer fills a hidden temp file next to
its target, named ``.{basename}.partial-{random}``, and renames it into place
on commit, so a crash never leaves a half-written object under a real key.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from stat import S_ISREG
from typing import BinaryIO

from backapp.errors import ObjectNotFoundError, StorageError, StoragePermissionError
from backapp.storage.base import ObjectInfo, TransferCallback

logger = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024
_PARTIAL = ".partial-"


def check_key(key: str) -> str:
    """Given an object key, return it if it is a safe relative path. Raise ValueError."""
    if not key:
        raise ValueError("storage key must not be empty")
    if "\x00" in key:
        raise ValueError(f"storage key must not contain NUL: {key!r}")
    if key.startswith("/"):
        raise ValueError(f"storage key must be relative, not absolute: {key!r}")
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise ValueError(f"storage key must not contain '', '.' or '..' segments: {key!r}")
    if _is_partial(key.rpartition("/")[2]):
        raise ValueError(f"storage key must not look like a temp file ('.*.partial-*'): {key!r}")
    return key


def _check_prefix(prefix: str) -> str:
    # A prefix may be empty or end with "/" (unlike a key), but must not escape the root.
    if prefix:
        check_key(prefix.removesuffix("/"))
    return prefix


def _is_partial(name: str) -> bool:
    return name.startswith(".") and _PARTIAL in name


def _partial_target(name: str) -> str:
    """Given a temp file name ``.{basename}.partial-{random}``, return ``basename``."""
    return name[1:].rsplit(_PARTIAL, 1)[0]


def storage_error(exc: OSError, action: str, path: Path | str) -> StorageError:
    """Given an OSError met while doing ``action`` on ``path``, return the StorageError to raise."""
    reason = exc.strerror or str(exc)
    if isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.EPERM):
        return StoragePermissionError(f"Permission denied: cannot {action} {path}")
    return StorageError(f"Cannot {action} {path}: {reason}")


def _fsync_dir(path: Path) -> None:
    # The rename is only durable once the directory entry itself reaches the disk.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems (e.g. certain network shares) refuse fsync on directories
    finally:
        os.close(fd)


class LocalWriter:
    """A streaming write to a temp file that becomes visible on ``commit``."""

    def __init__(
        self,
        target: Path,
        key: str,
        on_transfer: TransferCallback | None,
        prune: Callable[[Path], None] | None = None,
    ) -> None:
        self._target = target
        self._prune = prune
        self._key = key
        self._on_transfer = on_transfer
        self._temp, self._file = self._open_temp(target)
        self._size = 0
        self._done = False

    @staticmethod
    def _open_temp(target: Path) -> tuple[Path, BinaryIO]:
        # A concurrent delete may prune the freshly created parent folder before the temp
        # file lands in it; creating the folder again is enough to win that race.
        attempts = 3
        while True:
            attempts -= 1
            temp = target.with_name(f".{target.name}{_PARTIAL}{secrets.token_hex(6)}")
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                return temp, temp.open("xb")
            except FileNotFoundError as exc:
                if not attempts:
                    raise storage_error(exc, "create", temp) from exc
            except OSError as exc:
                raise storage_error(exc, "create", temp) from exc

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Given a chunk, append it to the temp file. Raise StorageError."""
        if self._done:
            raise ValueError(f"writer for {self._key!r} is already finished")
        try:
            self._file.write(data)
        except OSError as exc:
            self.abort()
            raise storage_error(exc, "write", self._temp) from exc
        length = memoryview(data).nbytes
        self._size += length
        if self._on_transfer is not None:
            try:
                self._on_transfer(length)
            except BaseException:
                self.abort()  # as on S3: a caller that stops mid-way keeps nothing
                raise

    def commit(self) -> ObjectInfo:
        """Flush, fsync and rename the temp file onto the key; return its ObjectInfo."""
        if self._done:
            raise ValueError(f"writer for {self._key!r} is already finished")
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self._temp, self._target)
            stat = self._target.stat()
        except OSError as exc:
            self.abort()
            raise storage_error(exc, "write", self._target) from exc
        self._done = True
        _fsync_dir(self._target.parent)
        modified = datetime.fromtimestamp(stat.st_mtime, UTC)
        return ObjectInfo(key=self._key, size=stat.st_size, modified=modified)

    def abort(self) -> None:
        """Close and remove the temp file; a finished writer is left alone."""
        if self._done:
            return
        self._done = True
        try:
            self._file.close()  # flushes what is buffered: on a full disk that fails too
        except OSError as exc:
            logger.debug("closing temp file %s: %s", self._temp, exc.strerror)
        try:
            self._temp.unlink(missing_ok=True)
        except OSError as exc:
            logger.warning("could not remove temp file %s: %s", self._temp, exc.strerror)
            return
        if self._prune is not None:
            self._prune(self._temp.parent)  # folders made for this object go with it


class LocalStorage:
    """Objects as files under a root folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def description(self) -> str:
        """Return the root folder."""
        return str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def open_writer(self, key: str, on_transfer: TransferCallback | None = None) -> LocalWriter:
        """Given a key, return a writer whose data appears under it on commit.

        Raise ValueError for an unsafe key, StorageError if the temp file cannot be created.
        """
        return LocalWriter(self._path(key), key, on_transfer, self._prune)

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        """Given a key and a payload, store it atomically and return it. Raise StorageError."""
        writer = self.open_writer(key)
        writer.write(data)
        return writer.commit()

    def get(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Given a key and a byte range [start, end), yield its bytes in 1 MiB chunks.

        Raise ObjectNotFoundError if the key does not exist, StorageError otherwise.
        """
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"invalid byte range [{start}, {end})")
        path = self._path(key)
        try:
            file = path.open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ObjectNotFoundError(f"Object '{key}' not found in {self.root}") from exc
        except OSError as exc:
            raise storage_error(exc, "read", path) from exc
        with file:
            remaining = None if end is None else end - start
            try:
                file.seek(start)
                while remaining is None or remaining > 0:
                    size = CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining)
                    chunk = file.read(size)
                    if not chunk:
                        return
                    if remaining is not None:
                        remaining -= len(chunk)
                    yield chunk
            except OSError as exc:
                raise storage_error(exc, "read", path) from exc

    def get_bytes(self, key: str) -> bytes:
        """Given a key, return the whole object. Raise ObjectNotFoundError."""
        return b"".join(self.get(key))

    def head(self, key: str) -> ObjectInfo | None:
        """Given a key, return its ObjectInfo, or None if there is no such object."""
        path = self._path(key)
        try:
            stat = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise storage_error(exc, "read", path) from exc
        if not S_ISREG(stat.st_mode):
            return None
        return ObjectInfo(key, stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC))

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Given a key prefix (a string prefix, as on S3), yield the objects under it by key.

        Temp files of unfinished writers are skipped. Raise StorageError.
        """
        _check_prefix(prefix)
        folder, _, _ = prefix.rpartition("/")
        for key, entry in self._walk(folder):
            if key.startswith(prefix) and not _is_partial(entry.name):
                try:
                    stat = entry.stat()
                except FileNotFoundError:
                    continue  # deleted while we listed
                except OSError as exc:
                    raise storage_error(exc, "list", entry.path) from exc
                modified = datetime.fromtimestamp(stat.st_mtime, UTC)
                yield ObjectInfo(key=key, size=stat.st_size, modified=modified)

    def _walk(self, folder: str) -> Iterator[tuple[str, os.DirEntry[str]]]:
        """Given a folder key, yield (key, entry) for every file below it, in key order."""
        path = self.root / folder if folder else self.root
        try:
            with os.scandir(path) as scan:
                entries = list(scan)
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise storage_error(exc, "list", path) from exc
        # Sorting a folder as "name/" makes a depth-first walk come out in plain key order
        # ("a-b" < "a/c" because "-" < "/"), the order S3 lists in.
        entries.sort(key=lambda e: e.name + "/" if e.is_dir(follow_symlinks=False) else e.name)
        for entry in entries:
            key = f"{folder}/{entry.name}" if folder else entry.name
            if entry.is_dir(follow_symlinks=False):
                yield from self._walk(key)
            elif entry.is_file():
                yield key, entry

    def delete(self, key: str) -> None:
        """Given a key, remove its file and any folders left empty; a missing key is fine."""
        path = self._path(key)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return  # a folder is not an object, so there is nothing to delete
        except OSError as exc:
            raise storage_error(exc, "delete", path) from exc
        self._prune(path.parent)

    def _prune(self, folder: Path) -> None:
        # Empty folders are an artefact of the file layout, not objects; S3 has none.
        while folder != self.root and self.root in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                return  # not empty (or already gone): nothing more to prune
            folder = folder.parent

    def abort_incomplete(self, prefix: str) -> int:
        """Given a key prefix, remove temp files of unfinished writes under it; return how many."""
        _check_prefix(prefix)
        folder, _, _ = prefix.rpartition("/")
        count = 0
        for key, entry in self._walk(folder):
            if not _is_partial(entry.name):
                continue
            parent, _, name = key.rpartition("/")
            target = f"{parent}/{_partial_target(name)}" if parent else _partial_target(name)
            if not target.startswith(prefix):
                continue
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                continue  # its writer finished or aborted meanwhile
            except OSError as exc:
                raise storage_error(exc, "delete", entry.path) from exc
            count += 1
        return count

    def check(self) -> None:
        """Create the root if needed and write and delete a probe. Raise StorageError."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise storage_error(exc, "create folder", self.root) from exc
        probe = f".backapp-probe-{secrets.token_hex(6)}"
        self.put_bytes(probe, b"backapp probe\n")
        self.delete(probe)
