"""What a restore (or a verification) will do with a backup's entries: the selected
folders and links in full, the selected files counted, hard links settled.

The plan is built from a Snapshot's entries, which are already checked; the same
plan drives restore (which writes) and verify (which only reads), so both judge
a backup alike.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import replace

from backapp.domain.gitignore import GitIgnore
from backapp.engine.format.manifest import Entry


class Selection:
    """Which paths a partial restore takes: gitignore patterns, matched as git matches
    them (a matched folder takes everything below it)."""

    def __init__(self, patterns: list[str]) -> None:
        self.patterns = patterns
        self._spec = GitIgnore(patterns)

    def selects(self, entry: Entry) -> bool:
        """Given an entry, return whether the patterns take it."""
        return self._spec.matches(entry.path, entry.type == "dir")


class RestorePlan:
    """What a restore selected from a manifest: folders and links in full, files counted.

    Up to ``KEEP_FILES`` selected file entries are kept (reading the manifest again costs
    about as much as the files' metadata); beyond that they are dropped and read again from
    the local manifest, one source backup at a time, so a tree of millions of files never
    sits in memory. In a partial restore, the folders above what is selected come along
    (with their own metadata), and hard links whose first path was not selected become
    files of their own.
    """

    KEEP_FILES = 100_000

    def __init__(self, select: Selection | None) -> None:
        self.select = select
        self.dirs: list[Entry] = []
        self.links: list[Entry] = []
        self.sources: set[str | None] = set()  # backups holding selected data (None: own)
        self.extra_files: dict[str | None, list[Entry]] = defaultdict(list)
        self.file_count = 0
        self.byte_count = 0
        self.kept: list[Entry] | None = []
        self.link_targets: set[str] = set()  # paths that selected hard links link to
        self._selected_files: set[str] = set()  # only in a partial restore
        self._ancestors: list[Entry] = []  # folders above the current entry, not selected
        self._wanted: dict[str, list[Entry]] = defaultdict(list)

    def selects(self, entry: Entry) -> bool:
        """Given an entry, return whether the restore includes it."""
        return self.select is None or self.select.selects(entry)

    def add(self, entry: Entry) -> None:
        """Given the next (checked) manifest entry, in manifest order, account for it."""
        if self.select is not None:
            while self._ancestors and not entry.path.startswith(self._ancestors[-1].path + "/"):
                self._ancestors.pop()
        if not self.selects(entry):
            if entry.type == "dir" and self.select is not None:
                self._ancestors.append(entry)
            return
        if self._ancestors:
            self.dirs.extend(self._ancestors)  # they lead to it: restored with their metadata
            self._ancestors.clear()
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
                self._wanted[entry.target].append(entry)
                self.link_targets.add(entry.target)

    def known_entries(self, paths: frozenset[str]) -> dict[str, Entry]:
        """Given paths, return the entries of them this plan kept (files and symlinks)."""
        if not paths:
            return {}
        found = {e.path: e for e in self.links if e.type == "symlink" and e.path in paths}
        for entry in self.kept or ():
            if entry.path in paths:
                found[entry.path] = entry
        return found

    def settle_links(
        self, targets: dict[str, Entry], bad: set[str], detach: set[str] | None = None
    ) -> None:
        """Given the entries hard links name, the links refused, and paths whose links must
        not link to them (kept local files), settle every selected hard link: refused links
        go; links to a file that is not restored become a file of their own (the first
        link), the others linking to it."""
        if bad:
            self.links = [e for e in self.links if e.path not in bad]
            for path in bad:
                self._wanted.pop(path, None)
        moved = False
        for target, wanted in list(self._wanted.items()):
            links = [e for e in wanted if e.path not in bad]
            entry = targets.get(target)
            if entry is None or not links:
                continue
            unselected = self.select is not None and target not in self._selected_files
            if entry.type == "symlink":
                unselected = self.select is not None and not self.selects(entry)
            if not unselected and not (detach and target in detach):
                continue
            self._detach(entry, links)
            moved = True
        if moved:
            # Links are made in order, symlinks first: a link's new target must exist first.
            self.links.sort(key=lambda e: e.type == "hardlink")

    def _detach(self, entry: Entry, links: list[Entry]) -> None:
        first, *rest = links
        self.links.remove(first)
        self.link_targets.discard(entry.path)
        if entry.type == "symlink":
            self.links.append(replace(first, type="symlink", target=entry.target))
        else:
            as_file = replace(
                first,
                type="file",
                target=None,
                size=entry.size,
                sha256=entry.sha256,
                backup=entry.backup,
                offset=entry.offset,
                blocks=entry.blocks,
                sparse=entry.sparse,
                partial=entry.partial,
                xattrs=entry.xattrs,
            )
            self.extra_files[entry.backup].append(as_file)
            self.sources.add(entry.backup)
            self.byte_count += entry.size
        if rest:
            self.link_targets.add(first.path)
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
