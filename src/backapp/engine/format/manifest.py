"""The manifest: every entry of a snapshot, one JSON object per line, gzip'd.

    line 1     {"manifest": 1, "backupId": ..., "blockSize": ..., "compression": ...}
    entries    {"path": ..., "type": "file", "mode": 420, "uid": 0, "gid": 0,
                "mtime": <ns>, "size": 5, "sha256": ..., "offset": 1536, ...}
    last line  {"end": true, "entries": N, "blocks": [compressed size of each block],
                "tarSize": ...}

Entries are in archive order (depth first, names sorted). ``offset`` is where a
file's data starts in the uncompressed tar stream of the backup named by
``backup`` (absent: this backup). The trailer's ``end`` marks a manifest that
was written completely.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import io
import json
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from backapp.engine.format.layout import is_backup_id
from backapp.errors import ArchiveError, UnsupportedFormatError

MANIFEST_VERSION = 2
MANIFEST_VERSIONS = (1, 2)
MAX_LINE = 16 * 1024 * 1024  # far beyond any real entry (attributes included)
_SPOOL_MAX = 16 * 1024 * 1024


_MAX_ID = 2**32 - 1
_MAX_NS = 2**63 - 1  # what the kernel's timespec (and os.utime) can take


def check_path(path: str) -> None:
    """Given an archive path, raise ArchiveError unless it is a relative path that stays
    below wherever it is restored: not empty or absolute, no '', '.' or '..' segment, no
    NUL, and encodable as the bytes of a file name."""
    if not isinstance(path, str):
        raise ArchiveError(f"unsafe path {path!r} (not a string)")
    # One pass of C-level searches (this runs for every entry written and read).
    wrapped = f"/{path}/"
    if "//" in wrapped or "/./" in wrapped or "/../" in wrapped or "\x00" in path:
        raise ArchiveError(f"unsafe path {path!r} ({_unsafe_reason(path)})")
    if not path.isascii():
        try:
            path.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raise ArchiveError(f"unsafe path {path!r} (not a valid file name)") from None


def _unsafe_reason(path: str) -> str:
    if not path or path.startswith("/"):
        return "absolute or empty"
    if "\x00" in path:
        return "contains NUL"
    bad = next(part for part in path.split("/") if part in ("", ".", ".."))
    return f"contains {bad!r}"


@dataclass(slots=True)
class Entry:
    """One entry of a snapshot."""

    path: str
    type: str  # "file" | "dir" | "symlink" | "hardlink"
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    size: int = 0
    sha256: str | None = None
    target: str | None = None
    backup: str | None = None
    offset: int | None = None
    inode: int = 0
    ctime_ns: int = 0
    partial: bool = False
    sparse: bool = False
    xattrs: dict[str, bytes] | None = None
    # Format 2: the blocks holding a file's bytes, and the block of its tar header.
    blocks: list[tuple[str, int]] | None = None
    header: tuple[str, int] | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the manifest line of this entry."""
        doc: dict[str, Any] = {
            "path": self.path,
            "type": self.type,
            "mode": self.mode,
            "uid": self.uid,
            "gid": self.gid,
            "mtime": self.mtime_ns,
        }
        if self.type == "file":
            doc["size"] = self.size
            doc["sha256"] = self.sha256
            if self.blocks is not None:
                doc["blocks"] = [list(b) for b in self.blocks]
            else:
                doc["offset"] = self.offset
            if self.backup:
                doc["backup"] = self.backup
            if self.partial:
                doc["partial"] = True
            if self.sparse:
                doc["sparse"] = True
        if self.target is not None:
            doc["target"] = self.target
        if self.inode:
            doc["inode"] = self.inode
            doc["ctime"] = self.ctime_ns
        if self.xattrs:
            doc["xattrs"] = {k: base64.b64encode(v).decode() for k, v in self.xattrs.items()}
        if self.header is not None:
            doc["h"] = list(self.header)
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Entry:
        """Given a manifest line, return the Entry, checked as restore needs it (a safe
        path, numbers in range, a file's data location). Raise ArchiveError naming it."""
        path = doc.get("path")
        get = doc.get
        try:
            check_path(path)  # type: ignore[arg-type]
            mode, uid, gid, mtime = doc["mode"], doc["uid"], doc["gid"], doc["mtime"]
            size, inode, ctime = get("size", 0), get("inode", 0), get("ctime", 0)
            # One expression for the common case (this runs for every entry read).
            if not (
                type(mode) is int
                and 0 <= mode <= 0o7777
                and type(uid) is int
                and 0 <= uid <= _MAX_ID
                and type(gid) is int
                and 0 <= gid <= _MAX_ID
                and type(mtime) is int
                and -_MAX_NS <= mtime <= _MAX_NS
                and type(size) is int
                and 0 <= size <= _MAX_NS
                and type(inode) is int
                and 0 <= inode < 2**64
                and type(ctime) is int
                and -_MAX_NS <= ctime <= _MAX_NS
            ):
                values = (mode, uid, gid, mtime, size, inode, ctime)
                for v, (name, low, high) in zip(values, _NUMBERS, strict=True):
                    _int(v, name, low, high)  # names the first that is wrong
            offset = get("offset")
            if offset is not None:
                _int(offset, "offset", 0, _MAX_NS)
            xattrs = get("xattrs")
            blocks, header = get("blocks"), get("h")
            entry = cls(
                path,  # type: ignore[arg-type]
                doc["type"],
                mode,
                uid,
                gid,
                mtime,
                size,
                get("sha256"),
                get("target"),
                get("backup"),
                offset,
                inode,
                ctime,
                get("partial", False) is True,
                get("sparse", False) is True,
                None if xattrs is None else _xattrs(xattrs),
                None if blocks is None else _block_list(blocks, size),
                None if header is None else _block_ref(header),
            )
            entry._check()
        except KeyError as exc:
            raise ArchiveError(f"manifest entry {path!r} lacks {exc.args[0]!r}") from None
        except ArchiveError as exc:
            raise ArchiveError(f"manifest entry {path!r}: {exc}") from None
        return entry

    def _check(self) -> None:
        kind = self.type
        if kind == "file":
            sha = self.sha256
            if (self.offset is None and self.blocks is None) or type(sha) is not str:
                raise ArchiveError("a file without its data location (offset, sha256)")
            if self.blocks is not None and (self.offset is not None or self.backup is not None):
                raise ArchiveError("a file with both blocks and an archive offset")
            if len(sha) != 64 or sha.strip(_HEX):
                raise ArchiveError("sha256 is not a SHA-256 digest")
            backup = self.backup
            if backup is not None and backup not in _SEEN_IDS:
                if type(backup) is not str or not is_backup_id(backup):
                    raise ArchiveError(f"its data is in {backup!r}, which is not a backup id")
                if len(_SEEN_IDS) < 10_000:
                    _SEEN_IDS.add(backup)
        elif kind in ("symlink", "hardlink"):
            if not isinstance(self.target, str) or not self.target or "\x00" in self.target:
                raise ArchiveError("a link without a target")
            if kind == "hardlink":
                check_path(self.target)
            else:
                try:
                    self.target.encode("utf-8", "surrogateescape")
                except UnicodeEncodeError:
                    raise ArchiveError("link target is not a valid file name") from None
        elif kind != "dir":
            raise ArchiveError(f"unknown type {kind!r}")


# (field, lowest, highest) of the numbers of an entry, in from_json's order.
_NUMBERS: tuple[tuple[str, int, int], ...] = (
    ("mode", 0, 0o7777),
    ("uid", 0, _MAX_ID),
    ("gid", 0, _MAX_ID),
    ("mtime", -_MAX_NS, _MAX_NS),
    ("size", 0, _MAX_NS),
    ("inode", 0, 2**64 - 1),
    ("ctime", -_MAX_NS, _MAX_NS),
)
_HEX = "0123456789abcdef"
_SEEN_IDS: set[str] = set()  # backup ids already checked (entries repeat a few of them)


def _int(value: Any, name: str, low: int, high: int) -> int:
    """Given a field's value, return it if it is an integer in [low, high] (not a bool).
    Raise ArchiveError naming the field."""
    if type(value) is not int or not low <= value <= high:
        raise ArchiveError(f"{name} {value!r} is out of range")
    return value


def _block_ref(doc: Any) -> tuple[str, int]:
    """Given a manifest's [block id, size], return it checked. Raise ArchiveError."""
    if not isinstance(doc, list) or len(doc) != 2:
        raise ArchiveError("a block reference is not [id, size]")
    block_id, size = doc
    if type(block_id) is not str or len(block_id) != 64 or block_id.strip(_HEX):
        raise ArchiveError(f"block id {str(block_id)[:70]!r} is malformed")
    return block_id, _int(size, "block size", 0, 2**31)


def _block_list(doc: Any, size: int) -> list[tuple[str, int]]:
    """Given a file's block list and its size, return the list checked: the blocks' sizes
    add up to the file's. Raise ArchiveError."""
    if not isinstance(doc, list):
        raise ArchiveError("blocks is not a list")
    blocks = [_block_ref(b) for b in doc]
    if sum(n for _, n in blocks) != size:
        raise ArchiveError(f"its blocks hold {sum(n for _, n in blocks)} bytes, its size is {size}")
    return blocks


def _xattrs(doc: Any) -> dict[str, bytes] | None:
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise ArchiveError("xattrs is not an object")
    out: dict[str, bytes] = {}
    for name, value in doc.items():
        if not isinstance(value, str) or not name or "\x00" in name:
            raise ArchiveError(f"extended attribute {name!r} is malformed")
        try:
            out[name] = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ArchiveError(f"extended attribute {name!r} is not base64") from None
    return out


def order_key(path: str) -> str:
    """Given an archive path, return the key that sorts entries in archive order (depth
    first, names sorted): the path with '/' as NUL, which sorts below every character a
    name can hold, so comparing keys compares paths part by part."""
    return path.replace("/", "\x00")


class EntryRules:
    """The rules between entries that a manifest obeys, applied one entry at a time by
    the writer (a backup never stores what restore would refuse) and by readers:

    - entries come in archive order, each path once (so ancestors come first);
    - nothing lies beneath a symlink, a file or a hard link of the backup;
    - a file's data is in this backup or in one it lists in ``requires``;
    - a hard link names an earlier path (whether that is a file or symlink is settled
      after the pass: ``links`` holds what each link needs).
    """

    def __init__(
        self, backup_id: str, requires: Iterable[str] | None = None, version: int = 1
    ) -> None:
        self.backup_id = backup_id
        self.version = version
        self.requires = None if requires is None else frozenset(requires)
        self._last: str | None = None
        self._barrier: tuple[str, str] | None = None  # (path + "/", its type)
        self.links: dict[str, list[str]] = {}  # hard-link target -> the links naming it

    def problem(self, entry: Entry) -> str | None:
        """Given the next entry, return why it breaks the rules (None: it is accepted)."""
        key = order_key(entry.path)
        if self._last is not None and key <= self._last:
            return "listed twice or out of archive order"
        barrier = self._barrier
        if barrier is not None and entry.path.startswith(barrier[0]):
            return f"lies beneath the {barrier[1]} {barrier[0][:-1]!r} of this backup"
        if (
            entry.type == "file"
            and entry.backup is not None
            and entry.backup != self.backup_id
            and self.requires is not None
            and entry.backup not in self.requires
        ):
            return f"its data is in backup {entry.backup}, which this backup does not require"
        if entry.type == "file" and (entry.blocks is not None) != (self.version >= 2):
            return f"its data location is not of storage format {self.version}"
        if entry.type == "hardlink":
            assert entry.target is not None
            if order_key(entry.target) >= key:
                return f"hard link to {entry.target!r}, which is not an earlier path"
        self._last = key
        if entry.type != "dir":
            self._barrier = (entry.path + "/", entry.type.replace("hardlink", "hard link"))
        if entry.type == "hardlink":
            assert entry.target is not None
            self.links.setdefault(entry.target, []).append(entry.path)
        return None


@dataclass
class Trailer:
    """The last line of a manifest: entry count and the archive's block table."""

    entries: int
    blocks: list[int]
    tar_size: int
    block_size: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class ManifestWriter:
    """Collects entries into a gzip'd spool file (memory stays small for any count)."""

    def __init__(self, header: dict[str, Any], version: int = MANIFEST_VERSION) -> None:
        self.version = version
        self._rules = EntryRules(str(header.get("backupId", "")), version=version)
        self._spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=_SPOOL_MAX)  # noqa: SIM115
        self._gz = gzip.GzipFile(fileobj=self._spool, mode="wb", compresslevel=6, mtime=0)
        self._count = 0
        self._pending: list[bytes] = []  # lines are compressed in batches: far fewer calls
        self._line({"manifest": version, **header})

    def add(self, entry: Entry) -> None:
        """Given an entry, append it. Raise ArchiveError if restore would refuse it."""
        try:
            check_path(entry.path)
            problem = self._rules.problem(entry)
        except ArchiveError as exc:
            problem = str(exc)
        if problem is not None:
            raise ArchiveError(f"refusing to store {entry.path!r}: {problem}")
        self._count += 1
        self._line(entry.to_json())

    def finish(self, trailer: Trailer) -> IO[bytes]:
        """Given the trailer, close the manifest and return its gzip bytes as a file."""
        self._line(
            {
                "end": True,
                "entries": self._count,
                "blocks": trailer.blocks,
                "tarSize": trailer.tar_size,
                **trailer.extra,
            }
        )
        self._flush()
        self._gz.close()
        self._spool.seek(0)
        return self._spool

    def close(self) -> None:
        """Discard the spool."""
        self._spool.close()

    def _line(self, doc: dict[str, Any]) -> None:
        self._pending.append(json.dumps(doc, separators=(",", ":")).encode())
        if len(self._pending) >= 512:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._pending.append(b"")
            self._gz.write(b"\n".join(self._pending))
            self._pending.clear()


class ManifestReader:
    """Reads a manifest from its decompressed lines: header, entries, trailer.

    With a ``problems`` list, an entry that is malformed or unsafe is left out and noted
    there as (path, message), and reading goes on; without one, it raises ArchiveError.
    """

    def __init__(
        self,
        gzip_stream: IO[bytes],
        name: str = "manifest",
        problems: list[tuple[str, str]] | None = None,
    ) -> None:
        self._name = name
        self._problems = problems
        self._lines = io.BufferedReader(gzip.GzipFile(fileobj=gzip_stream, mode="rb"))
        first = self._next()
        if first is None or "manifest" not in first:
            raise ArchiveError(f"{name} is not a BackApp manifest")
        if first.get("manifest") not in MANIFEST_VERSIONS:
            raise UnsupportedFormatError(
                f"{name} has manifest version {first.get('manifest')!r}; this BackApp reads "
                f"versions 1 and 2 (a newer BackApp wrote it?)"
            )
        self.version: int = first["manifest"]
        self.header: dict[str, Any] = first
        self.trailer: Trailer | None = None
        self.lines = 0

    def __iter__(self) -> Iterator[Entry]:
        while True:
            doc = self._next()
            if doc is None:
                raise ArchiveError(f"{self._name} is truncated (no end record)")
            if doc.get("end") is True:
                self.trailer = _trailer(doc, self.header, self._name)
                return
            self.lines += 1
            try:
                yield Entry.from_json(doc)
            except ArchiveError as exc:
                if self._problems is None:
                    raise
                where = doc.get("path") if isinstance(doc.get("path"), str) else None
                self._problems.append((where or f"{self._name}, entry {self.lines}", str(exc)))

    def skip_to_trailer(self) -> Trailer:
        """Return the trailer without parsing the entries before it (for the block table
        of a backup whose entries are not needed). Raise ArchiveError."""
        while self.trailer is None:
            try:
                line = self._lines.readline(MAX_LINE + 1)
            except (OSError, EOFError, ValueError, zlib.error) as exc:
                raise ArchiveError(f"{self._name} is damaged: {exc}") from exc
            if not line:
                raise ArchiveError(f"{self._name} is truncated (no end record)")
            if line.startswith(b'{"end":'):  # entries start with '{"path":'
                doc = json.loads(line)
                if isinstance(doc, dict) and doc.get("end") is True:
                    self.trailer = _trailer(doc, self.header, self._name)
        return self.trailer

    def read_trailer(self) -> Trailer:
        """Consume the remaining entries (if any are left) and return the trailer."""
        if self.trailer is not None:
            return self.trailer
        for _ in self:
            pass
        assert self.trailer is not None
        return self.trailer

    def _next(self) -> dict[str, Any] | None:
        try:
            line = self._lines.readline(MAX_LINE + 1)
        except (OSError, EOFError, ValueError, zlib.error) as exc:
            raise ArchiveError(f"{self._name} is damaged: {exc}") from exc
        if not line:
            return None
        if len(line) > MAX_LINE:
            raise ArchiveError(f"{self._name} is damaged: a line is longer than {MAX_LINE} bytes")
        try:
            doc = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise ArchiveError(f"{self._name} is damaged: a line is not JSON") from exc
        if not isinstance(doc, dict):
            raise ArchiveError(f"{self._name} is damaged: a line is not an object")
        return doc


def _trailer(doc: dict[str, Any], header: dict[str, Any], name: str) -> Trailer:
    blocks = doc.get("blocks", [])
    block_size = header.get("blockSize", 0)
    try:
        trailer = Trailer(
            entries=_int(doc.get("entries", 0), "entries", 0, _MAX_NS),
            blocks=[_int(b, "block", 1, _MAX_NS) for b in blocks],
            tar_size=_int(doc.get("tarSize", 0), "tarSize", 0, _MAX_NS),
            block_size=_int(block_size, "blockSize", 0, 2**31),
            extra={k: v for k, v in doc.items() if k not in ("end", "entries", "blocks")},
        )
    except (ArchiveError, TypeError) as exc:
        raise ArchiveError(f"{name}: its end record is damaged ({exc})") from None
    if trailer.block_size and len(trailer.blocks) != -(-trailer.tar_size // trailer.block_size):
        raise ArchiveError(
            f"{name}: its end record lists {len(trailer.blocks)} blocks for "
            f"{trailer.tar_size} bytes of archive in blocks of {trailer.block_size}"
        )
    return trailer
