"""The restore target, reached only through directory descriptors restore opened itself.

The target folder is opened once. Every path below it is reached component by
component with ``openat(..., O_NOFOLLOW | O_DIRECTORY)``, so a symlink anywhere
below the target (made by the backup being restored, or already there) is never
followed, whatever its name says; files, links and metadata are then created and
set relative to the descriptor of their folder (``dir_fd=``), so paths of any
length work. New files are written unnamed (``O_TMPFILE``) and linked under their
name only once complete and checked, so an interrupted restore never leaves a
partial file under a real name (on filesystems without ``O_TMPFILE`` a hidden
``.backapp-restoring-*`` name is used and renamed).

Only the components named in ``follow`` (the ancestors of the sources and the
sources themselves, for a restore to the original location) may be symlinks that
are followed: those are the live system's own links, which the backup read through.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections import OrderedDict
from dataclasses import dataclass

from backapp.errors import RestoreError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_CACHE = 64  # open folder descriptors kept (restore order is depth first: few are needed)
_TEMP_PREFIX = ".backapp-restoring-"


class LinkInTheWayError(RestoreError):
    """A folder on the way is a symlink in the target (never followed)."""


class _MissingError(RestoreError):
    """Private: a folder on the way does not exist (and was not to be made)."""


@dataclass
class NewFile:
    """A file being written: its descriptor, and how it will get its name."""

    fd: int
    dir_fd: int  # a descriptor of its folder of its own (closed with the file)
    temp: str | None  # hidden temp name, when the filesystem has no O_TMPFILE


class TargetDir:
    """The open target folder; every method takes a '/'-separated path below it."""

    def __init__(self, root: str, follow: frozenset[str] = frozenset()) -> None:
        try:
            self.root_fd = os.open(root, _DIR_FLAGS)
        except OSError as exc:
            raise RestoreError(f"cannot open restore target {root}: {exc.strerror}") from exc
        self.root = root
        self.follow = follow
        self._dirs: OrderedDict[str, int] = OrderedDict()
        self._tmpfile = hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd")

    def close(self) -> None:
        """Close every descriptor held."""
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs.clear()
        os.close(self.root_fd)

    def where(self, rel: str) -> str:
        """Given a path below the target, return it as a full path (for messages)."""
        return f"{self.root.rstrip('/')}/{rel}" if rel else self.root

    # -- folders ---------------------------------------------------------------

    def dir_fd(self, rel: str, *, create: bool) -> int:
        """Given a folder path, return a descriptor of it (held by the target: do not close),
        making missing folders (mode 0700) when ``create``. Raise RestoreError if a
        component is a symlink or not a folder, LinkInTheWayError for a symlink."""
        if not rel:
            return self.root_fd
        fd = self._dirs.get(rel)
        if fd is not None:
            self._dirs.move_to_end(rel)
            return fd
        parent, _, name = rel.rpartition("/")
        parent_fd = self.dir_fd(parent, create=create)
        fd = self._open_dir(parent_fd, name, rel, create)
        self._dirs[rel] = fd
        if len(self._dirs) > _CACHE:
            _, old = self._dirs.popitem(last=False)
            os.close(old)
        return fd

    def _open_dir(self, parent_fd: int, name: str, rel: str, create: bool) -> int:
        flags = _DIR_FLAGS | (0 if rel in self.follow else os.O_NOFOLLOW)
        for _ in range(3):
            try:
                return os.open(name, flags, dir_fd=parent_fd)
            except FileNotFoundError:
                if not create:
                    raise _MissingError(f"{self.where(rel)} does not exist") from None
                with contextlib.suppress(FileExistsError):  # made meanwhile: open it
                    os.mkdir(name, 0o700, dir_fd=parent_fd)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise RestoreError(f"cannot open {self.where(rel)}: {exc.strerror}") from exc
                self._not_a_folder(parent_fd, name, rel)
        raise RestoreError(f"{self.where(rel)} keeps changing; not restored")

    def _not_a_folder(self, parent_fd: int, name: str, rel: str) -> None:
        st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            raise LinkInTheWayError(
                f"{self.where(rel)} is a symlink in the target; restore never writes through links"
            )
        raise RestoreError(f"{self.where(rel)} exists and is not a folder")

    def parent(self, rel: str, *, create: bool = True) -> tuple[int, str]:
        """Given a path, return (descriptor of its folder, its name). Raise RestoreError."""
        folder, _, name = rel.rpartition("/")
        return self.dir_fd(folder, create=create), name

    def lstat(self, rel: str) -> os.stat_result | None:
        """Given a path, return its lstat, or None if nothing is there. Raise RestoreError."""
        try:
            parent_fd, name = self.parent(rel, create=False)
            return os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except (FileNotFoundError, _MissingError):
            return None

    def make_dir(self, rel: str, *, replace_link: bool) -> bool:
        """Given a folder path, make it (mode 0700 until its metadata is set); a folder that
        is there is used. With ``replace_link`` a symlink in its place is replaced (the
        link, never what it points to). Return whether it was made. Raise RestoreError."""
        parent_fd, name = self.parent(rel)
        try:
            os.mkdir(name, 0o700, dir_fd=parent_fd)
            return True
        except FileExistsError:
            pass
        st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            return False
        if stat.S_ISLNK(st.st_mode) and rel in self.follow:
            return False  # the live system's own link to the folder (original location)
        if stat.S_ISLNK(st.st_mode) and replace_link:
            os.unlink(name, dir_fd=parent_fd)
            os.mkdir(name, 0o700, dir_fd=parent_fd)
            return True
        if stat.S_ISLNK(st.st_mode):
            raise LinkInTheWayError(
                f"{self.where(rel)} is a symlink in the target; restore never writes through links"
            )
        raise RestoreError(f"{self.where(rel)} exists and is not a folder")

    def open_dir(self, rel: str) -> int:
        """Given a folder path, return a new descriptor of it (the caller closes it), never
        through a symlink. Raise RestoreError."""
        return os.dup(self.dir_fd(rel, create=False))

    # -- files -----------------------------------------------------------------

    def new_file(self, rel: str, mode: int) -> NewFile:
        """Given a file path and its permission bits, start writing it unnamed (see the
        module docstring). Raise RestoreError, OSError."""
        parent_fd, _ = self.parent(rel)
        own = os.dup(parent_fd)
        try:
            if self._tmpfile:
                try:
                    fd = os.open(".", os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, mode, dir_fd=own)
                    return NewFile(fd, own, None)
                except OSError as exc:
                    if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                        raise
                    self._tmpfile = False  # this filesystem has none: hidden temp names
            temp = _TEMP_PREFIX + secrets.token_hex(8)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            return NewFile(os.open(temp, flags, mode, dir_fd=own), own, temp)
        except BaseException:
            os.close(own)
            raise

    def place(self, new: NewFile, rel: str, *, replace: bool) -> None:
        """Given a finished file, give it its name; with ``replace`` an existing file or
        link of that name is replaced atomically (never a folder). Raise RestoreError,
        OSError. The file stays open (its metadata is set through it)."""
        name = rel.rpartition("/")[2]
        if new.temp is None:
            if not replace:
                try:
                    os.link(f"/proc/self/fd/{new.fd}", name, dst_dir_fd=new.dir_fd)
                except FileExistsError:
                    raise RestoreError(f"{self.where(rel)} already exists") from None
                return
            new.temp = _TEMP_PREFIX + secrets.token_hex(8)
            os.link(f"/proc/self/fd/{new.fd}", new.temp, dst_dir_fd=new.dir_fd)
        if not replace and _exists(new.dir_fd, name):
            raise RestoreError(f"{self.where(rel)} already exists")
        if replace:
            _refuse_folder(new.dir_fd, name, self.where(rel))
        os.rename(new.temp, name, src_dir_fd=new.dir_fd, dst_dir_fd=new.dir_fd)
        new.temp = None

    def discard(self, new: NewFile) -> None:
        """Given a file being written, drop it (never raises)."""
        with contextlib.suppress(OSError):
            os.close(new.fd)
        if new.temp is not None:
            with contextlib.suppress(OSError):
                os.unlink(new.temp, dir_fd=new.dir_fd)
        with contextlib.suppress(OSError):
            os.close(new.dir_fd)

    def close_file(self, new: NewFile) -> None:
        """Given a placed file, close its descriptors."""
        os.close(new.fd)
        os.close(new.dir_fd)

    # -- links -----------------------------------------------------------------

    def symlink(self, rel: str, target: str, *, replace: bool) -> None:
        """Given a path and a link target, make the symlink (replacing a file or link with
        ``replace``). Raise RestoreError, OSError."""
        parent_fd, name = self.parent(rel)
        if not replace:
            try:
                os.symlink(target, name, dir_fd=parent_fd)
            except FileExistsError:
                raise RestoreError(f"{self.where(rel)} already exists") from None
            return
        _refuse_folder(parent_fd, name, self.where(rel))
        temp = _TEMP_PREFIX + secrets.token_hex(8)
        os.symlink(target, temp, dir_fd=parent_fd)
        try:
            os.rename(temp, name, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=parent_fd)
            raise

    def hardlink(self, rel: str, source: str, identity: tuple[int, int], *, replace: bool) -> None:
        """Given a path, the path of an entry this restore made, and that entry's (device,
        inode), link to it; refuse if something else is there now. Raise RestoreError."""
        folder, _, source_name = source.rpartition("/")
        source_fd = self.open_dir(folder)  # its own: looking up rel may evict cached ones
        try:
            st = os.stat(source_name, dir_fd=source_fd, follow_symlinks=False)
            if (st.st_dev, st.st_ino) != identity:
                raise RestoreError(
                    f"{self.where(source)} changed since it was restored; not linked to it"
                )
            parent_fd, name = self.parent(rel)
            if replace:
                _refuse_folder(parent_fd, name, self.where(rel))
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=parent_fd)
            try:
                os.link(
                    source_name,
                    name,
                    src_dir_fd=source_fd,
                    dst_dir_fd=parent_fd,
                    follow_symlinks=False,
                )
            except FileExistsError:
                raise RestoreError(f"{self.where(rel)} already exists") from None
        finally:
            os.close(source_fd)

    def unique_name(self, rel: str, suffix: str) -> str:
        """Given a path and a suffix, return ``rel + suffix`` (then ``-1``, ``-2``, …): the
        first such path that does not exist yet."""
        n = 0
        while True:
            candidate = rel + suffix + (f"-{n}" if n else "")
            if self.lstat(candidate) is None:
                return candidate
            n += 1


def _exists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _refuse_folder(dir_fd: int, name: str, where: str) -> None:
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        raise RestoreError(f"{where} is a folder in the target; not replaced by a file")
