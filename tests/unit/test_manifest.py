"""The manifest's rules hold both ways: the writer refuses to store an entry that a
reader would refuse, so a completed backup never holds one."""

from __future__ import annotations

import pytest

from backapp.engine.format.manifest import Entry, ManifestWriter
from backapp.errors import ArchiveError

BACKUP = "20261201T000000.000Z-abcdef"


def _dir(path: str) -> Entry:
    return Entry(path=path, type="dir", mode=0o755, uid=0, gid=0, mtime_ns=0)


def _file(path: str, **over: object) -> Entry:
    fields: dict[str, object] = {"size": 1, "sha256": "0" * 64, "blocks": [("ab" * 32, 1)]}
    fields.update(over)
    return Entry(path=path, type="file", mode=0o644, uid=0, gid=0, mtime_ns=0, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("entries", "words"),
    [
        ([_dir("a"), _dir("a")], "twice or out of archive order"),
        ([_dir("b"), _dir("a")], "twice or out of archive order"),
        ([_file("a"), _file("a/b")], "beneath the file"),
        ([_dir("a/../x")], "unsafe path"),
        ([_dir("/abs")], "unsafe path"),
        ([Entry("s", "symlink", 0o777, 0, 0, 0, target="/x"), _dir("s/in")], "beneath the symlink"),
        ([Entry("h", "hardlink", 0o644, 0, 0, 0, target="z")], "not an earlier path"),
    ],
)
def test_the_writer_refuses_what_a_reader_would_refuse(entries: list[Entry], words: str) -> None:
    writer = ManifestWriter({"backupId": BACKUP})
    try:
        with pytest.raises(ArchiveError, match=words):
            for entry in entries:
                writer.add(entry)
    finally:
        writer.close()


def test_entries_round_trip_with_their_attributes_and_holes() -> None:
    entry = _file("a", sparse=True, partial=True, xattrs={"user.k": b"\x00\xffv"})
    assert Entry.from_json(entry.to_json()) == entry
