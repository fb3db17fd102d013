"""What is particular to LocalStorage: safe keys, temp files, tidy folders, plain errors."""

from __future__ import annotations

import errno
import re
from pathlib import Path

import pytest

from backapp.errors import StorageError, StoragePermissionError
from backapp.storage import LocalStorage
from backapp.storage.local import storage_error


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/etc/passwd",
        "../outside",
        "a/../../b",
        "a//b",
        "a/",
        "./a",
        "a/\x00b",
        "a/.b.partial-1f",
    ],
)
def test_keys_that_could_escape_the_root_or_clash_are_refused(tmp_path: Path, key: str) -> None:
    storage = LocalStorage(tmp_path / "store")

    with pytest.raises(ValueError, match="storage key"):
        storage.put_bytes(key, b"x")
    with pytest.raises(ValueError, match="storage key"):
        storage.head(key)
    assert not (tmp_path / "outside").exists()


def test_writer_fills_a_hidden_temp_file_next_to_its_target(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    writer = storage.open_writer("cfg/id/data.tar.gz")
    writer.write(b"partial")

    names = [p.name for p in (tmp_path / "cfg" / "id").iterdir()]
    assert len(names) == 1
    assert re.fullmatch(r"\.data\.tar\.gz\.partial-[0-9a-f]+", names[0])
    assert list(storage.list("")) == []

    writer.commit()
    assert [p.name for p in (tmp_path / "cfg" / "id").iterdir()] == ["data.tar.gz"]


def test_abort_removes_the_temp_file_and_the_folders_made_for_it(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put_bytes("cfg/kept", b"x")
    writer = storage.open_writer("cfg/id/data")
    writer.write(b"partial")

    writer.abort()

    assert sorted(p.name for p in tmp_path.rglob("*")) == ["cfg", "kept"]


def test_delete_prunes_folders_left_empty_but_never_the_root(tmp_path: Path) -> None:
    root = tmp_path / "store"
    storage = LocalStorage(root)
    storage.put_bytes("cfg/id1/backup.json", b"{}")
    storage.put_bytes("cfg/id2/backup.json", b"{}")

    storage.delete("cfg/id1/backup.json")
    assert sorted(p.name for p in (root / "cfg").iterdir()) == ["id2"]

    storage.delete("cfg/id2/backup.json")
    assert root.is_dir()
    assert list(root.iterdir()) == []


def test_abort_incomplete_leaves_temp_files_outside_the_prefix(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    inside = storage.open_writer("cfg-a/data")
    inside.write(b"x")
    outside = storage.open_writer("cfg-b/data")
    outside.write(b"y")
    storage.put_bytes("cfg-a/backup.json", b"{}")

    assert storage.abort_incomplete("cfg-a") == 1

    outside.commit()
    assert [info.key for info in storage.list("")] == ["cfg-a/backup.json", "cfg-b/data"]


def test_check_creates_a_missing_root(tmp_path: Path) -> None:
    root = tmp_path / "new" / "backups"
    LocalStorage(root).check()

    assert root.is_dir()
    assert list(root.iterdir()) == []


def test_check_reports_a_root_that_is_a_file_in_one_line(tmp_path: Path) -> None:
    root = tmp_path / "file"
    root.write_text("not a folder")

    with pytest.raises(StorageError) as failure:
        LocalStorage(root).check()

    assert str(failure.value) == f"Cannot create folder {root}: File exists"


def test_os_errors_become_storage_errors_with_their_reason() -> None:
    denied = storage_error(PermissionError(errno.EACCES, "Permission denied"), "write", "/b/k")
    full = storage_error(OSError(errno.ENOSPC, "No space left on device"), "write", "/b/k")

    assert isinstance(denied, StoragePermissionError)
    assert str(denied) == "Permission denied: cannot write /b/k"
    assert type(full) is StorageError
    assert str(full) == "Cannot write /b/k: No space left on device"
