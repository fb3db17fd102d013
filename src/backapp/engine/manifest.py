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

import gzip
import io
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from backapp.errors import ArchiveError

MANIFEST_VERSION = 1
_SPOOL_MAX = 16 * 1024 * 1024


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
            doc["offset"] = self.offset
            if self.backup:
                doc["backup"] = self.backup
            if self.partial:
                doc["partial"] = True
        if self.target is not None:
            doc["target"] = self.target
        if self.inode:
            doc["inode"] = self.inode
            doc["ctime"] = self.ctime_ns
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Entry:
        """Given a manifest line, return the Entry. Raise ArchiveError."""
        try:
            entry = cls(
                path=doc["path"],
                type=doc["type"],
                mode=int(doc["mode"]),
                uid=int(doc["uid"]),
                gid=int(doc["gid"]),
                mtime_ns=int(doc["mtime"]),
                size=int(doc.get("size", 0)),
                sha256=doc.get("sha256"),
                target=doc.get("target"),
                backup=doc.get("backup"),
                offset=doc.get("offset"),
                inode=int(doc.get("inode", 0)),
                ctime_ns=int(doc.get("ctime", 0)),
                partial=bool(doc.get("partial", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ArchiveError(f"manifest entry is malformed: {exc!r}") from exc
        if not isinstance(entry.path, str) or entry.type not in (
            "file",
            "dir",
            "symlink",
            "hardlink",
        ):
            raise ArchiveError(f"manifest entry has an unknown type: {doc.get('type')!r}")
        if entry.type == "file" and (entry.offset is None or entry.sha256 is None):
            raise ArchiveError(f"manifest entry {entry.path!r} lacks its data location")
        return entry


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

    def __init__(self, header: dict[str, Any]) -> None:
        self._spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=_SPOOL_MAX)  # noqa: SIM115
        self._gz = gzip.GzipFile(fileobj=self._spool, mode="wb", compresslevel=6, mtime=0)
        self._count = 0
        self._pending: list[bytes] = []  # lines are compressed in batches: far fewer calls
        self._line({"manifest": MANIFEST_VERSION, **header})

    def add(self, entry: Entry) -> None:
        """Given an entry, append it."""
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
    """Reads a manifest from its decompressed lines: header, entries, trailer."""

    def __init__(self, gzip_stream: IO[bytes], name: str = "manifest") -> None:
        self._name = name
        self._lines = io.BufferedReader(gzip.GzipFile(fileobj=gzip_stream, mode="rb"))
        first = self._next()
        if first is None or first.get("manifest") != MANIFEST_VERSION:
            raise ArchiveError(f"{name} is not a BackApp manifest (or of an unknown version)")
        self.header: dict[str, Any] = first
        self.trailer: Trailer | None = None

    def __iter__(self) -> Iterator[Entry]:
        while True:
            doc = self._next()
            if doc is None:
                raise ArchiveError(f"{self._name} is truncated (no end record)")
            if doc.get("end") is True:
                self.trailer = Trailer(
                    entries=int(doc.get("entries", 0)),
                    blocks=[int(b) for b in doc.get("blocks", [])],
                    tar_size=int(doc.get("tarSize", 0)),
                    block_size=int(self.header.get("blockSize", 0)),
                    extra={k: v for k, v in doc.items() if k not in ("end", "entries", "blocks")},
                )
                return
            yield Entry.from_json(doc)

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
            line = self._lines.readline()
        except (OSError, EOFError, ValueError) as exc:
            raise ArchiveError(f"{self._name} is damaged: {exc}") from exc
        if not line:
            return None
        try:
            doc = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ArchiveError(f"{self._name} is damaged: a line is not JSON") from exc
        if not isinstance(doc, dict):
            raise ArchiveError(f"{self._name} is damaged: a line is not an object")
        return doc
