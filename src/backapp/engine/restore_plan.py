"""What a restore will do: every manifest path checked, the selected entries grouped."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

import pathspec

from backapp.engine.manifest import Entry
from backapp.errors import RestoreError


def check_entry_path(path: str) -> None:
    """Given a manifest path, raise RestoreError unless it is a safe relative path."""
    if not path or path.startswith("/") or "\x00" in path:
        raise RestoreError(f"refusing unsafe path in backup: {path!r} (absolute or empty)")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise RestoreError(f"refusing unsafe path in backup: {path!r} (contains {part!r})")


class RestorePlan:
    """What a restore selected from a manifest: folders and links in full, files counted.

    Up to ``KEEP_FILES`` selected file entries are kept (reading the manifest again costs
    about as much as the files' metadata); beyond that they are dropped and read again from
    the local manifest, one source backup at a time, so a tree of millions of files never
    sits in memory. Hard links whose first path was not selected become extra files.
    """

    KEEP_FILES = 100_000

    def __init__(self, select: pathspec.PathSpec[Any] | None) -> None:
        self.select = select
        self.dirs: list[Entry] = []
        self.links: list[Entry] = []
        self.symlink_paths: set[str] = set()
        self.sources: set[str | None] = set()  # backups holding selected data (None: own)
        self.extra_files: dict[str | None, list[Entry]] = defaultdict(list)
        self.file_count = 0
        self.byte_count = 0
        self.kept: list[Entry] | None = []
        # Only for a partial restore: which files were chosen, to settle hard links.
        self._selected_files: set[str] = set()
        self._wanted_targets: dict[str, list[Entry]] = defaultdict(list)

    def selects(self, entry: Entry) -> bool:
        """Given an entry, return whether the restore includes it."""
        if self.select is None:
            return True
        probe = entry.path + "/" if entry.type == "dir" else entry.path
        return bool(self.select.match_file(probe))

    def add(self, entry: Entry) -> None:
        """Given the next manifest entry (already path-checked), account for it."""
        if entry.type == "symlink":
            self.symlink_paths.add(entry.path)
        if not self.selects(entry):
            return
        if entry.type == "dir":
            self.dirs.append(entry)
        elif entry.type == "file":
            self.sources.add(entry.backup)
            if self.select is not None:
                self._selected_files.add(entry.path)
            self.file_count += 1
            self.byte_count += entry.size
            if self.kept is not None:
                self.kept.append(entry)
                if len(self.kept) > self.KEEP_FILES:
                    self.kept = None  # too many: stream them from the manifest instead
        else:
            self.links.append(entry)
            self.file_count += 1
            if entry.type == "hardlink":
                assert entry.target is not None
                self._wanted_targets[entry.target].append(entry)

    def missing_link_targets(self) -> bool:
        """Return whether some selected hard link points to a file that was not selected."""
        if self.select is None:
            return False
        return any(t not in self._selected_files for t in self._wanted_targets)

    def resolve_link_target(self, entry: Entry) -> None:
        """Given a manifest entry, make it the data of hard links whose target was left out."""
        if entry.type != "file" or entry.path in self._selected_files:
            return
        links = self._wanted_targets.get(entry.path)
        if not links:
            return
        # The first selected link becomes a regular file; the others link to it.
        first, *rest = links
        self.links.remove(first)
        as_file = Entry(**{**_fields(first), "type": "file", "target": None})
        for name in ("size", "sha256", "backup", "offset"):
            setattr(as_file, name, getattr(entry, name))
        self.extra_files[entry.backup].append(as_file)
        self.sources.add(entry.backup)
        self._selected_files.add(first.path)
        self.byte_count += entry.size
        for link in rest:
            link.target = first.path

    def files_from(self, entries: Iterable[Entry], source: str | None) -> Iterator[Entry]:
        """Given the manifest's entries again (read only if too many were to be kept), yield
        the selected files whose data is in ``source`` (None: the restored backup), then the
        extra files of that source."""
        if self.kept is not None:
            yield from (e for e in self.kept if e.backup == source)
        else:
            for entry in entries:
                if entry.type == "file" and entry.backup == source and self.selects(entry):
                    yield entry
        yield from sorted(self.extra_files.get(source, []), key=lambda e: e.offset or 0)

    def anything(self) -> bool:
        """Return whether anything at all was selected."""
        return bool(self.dirs or self.sources or self.links)


def _fields(entry: Entry) -> dict[str, Any]:
    return {name: getattr(entry, name) for name in Entry.__slots__}
