"""What a restore will do: every manifest path checked, the selected entries grouped."""

from __future__ import annotations

from collections import defaultdict
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
    """The selected entries of a manifest, grouped for restoring."""

    def __init__(self) -> None:
        self.dirs: list[Entry] = []
        self.files: dict[str | None, list[Entry]] = defaultdict(list)
        self.links: list[Entry] = []
        self.symlink_paths: set[str] = set()
        self.file_count = 0
        self.byte_count = 0
        self._selected_files: set[str] = set()
        self._wanted_targets: dict[str, list[Entry]] = defaultdict(list)

    def add(self, entry: Entry, select: pathspec.PathSpec[Any] | None) -> None:
        if entry.type == "symlink":
            self.symlink_paths.add(entry.path)
        if select is not None:
            probe = entry.path + "/" if entry.type == "dir" else entry.path
            if not select.match_file(probe):
                return
        if entry.type == "dir":
            self.dirs.append(entry)
        elif entry.type == "file":
            self.files[entry.backup].append(entry)
            self._selected_files.add(entry.path)
            self.file_count += 1
            self.byte_count += entry.size
        else:
            self.links.append(entry)
            self.file_count += 1
            if entry.type == "hardlink":
                assert entry.target is not None
                self._wanted_targets[entry.target].append(entry)

    def missing_link_targets(self) -> bool:
        return any(t not in self._selected_files for t in self._wanted_targets)

    def resolve_link_target(self, entry: Entry) -> None:
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
        as_file.backup = entry.backup
        self.files[entry.backup].append(as_file)
        self._selected_files.add(first.path)
        self.byte_count += entry.size
        for link in rest:
            link.target = first.path

    def anything(self) -> bool:
        return bool(self.dirs or self.files or self.links)


def _fields(entry: Entry) -> dict[str, Any]:
    return {name: getattr(entry, name) for name in Entry.__slots__}
