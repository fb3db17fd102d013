"""The behaviour every Storage backend must share, run against a local folder and S3."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from backapp.errors import CancelledError, ObjectNotFoundError, StorageError
from backapp.storage import LocalStorage, Storage
from backapp.storage.s3 import S3Storage

MIB = 1024 * 1024
PART_SIZE = 5 * MIB  # S3's minimum, so a 12 MiB object takes three parts


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "store")
    bucket = request.getfixturevalue("s3_bucket")
    endpoint = request.getfixturevalue("moto_endpoint")
    return S3Storage(bucket, "us-east-1", endpoint, part_size=PART_SIZE)


def keys(storage: Storage, prefix: str = "") -> list[str]:
    return [info.key for info in storage.list(prefix)]


def test_put_bytes_round_trips_through_get_and_head(storage: Storage) -> None:
    info = storage.put_bytes("cfg/backup.json", b'{"ok": true}')

    assert info.key == "cfg/backup.json"
    assert info.size == 12
    assert storage.get_bytes("cfg/backup.json") == b'{"ok": true}'
    assert b"".join(storage.get("cfg/backup.json")) == b'{"ok": true}'
    head = storage.head("cfg/backup.json")
    assert head is not None
    assert head.size == 12
    assert head.modified is not None


def test_put_bytes_replaces_an_existing_object(storage: Storage) -> None:
    storage.put_bytes("a", b"old contents")
    storage.put_bytes("a", b"new")

    assert storage.get_bytes("a") == b"new"
    assert keys(storage) == ["a"]


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (0, 10),
        (5, None),
        (MIB - 3, 2 * MIB + 5),
        (3 * MIB - 1, None),
        (3 * MIB - 10, 3 * MIB + 100),  # an end past the object stops at its end
        (3 * MIB, None),  # a start at the end yields nothing
        (7, 7),
    ],
)
def test_ranged_get_yields_exactly_the_requested_bytes(
    storage: Storage, start: int, end: int | None
) -> None:
    data = os.urandom(3 * MIB)
    storage.put_bytes("blob", data)

    chunks = list(storage.get("blob", start, end))

    assert b"".join(chunks) == data[start:end]
    assert all(len(chunk) <= MIB for chunk in chunks)


def test_streamed_writer_stores_a_multi_part_object_intact(storage: Storage) -> None:
    data = os.urandom(12 * MIB + 12345)
    transferred: list[int] = []

    writer = storage.open_writer("cfg/id/data.tar.gz", on_transfer=transferred.append)
    # Odd-sized writes so part boundaries fall inside a chunk.
    for offset in range(0, len(data), 1_000_003):
        writer.write(data[offset : offset + 1_000_003])
    info = writer.commit()

    assert info.size == len(data)
    assert sum(transferred) == len(data)
    head = storage.head("cfg/id/data.tar.gz")
    assert head is not None
    assert head.size == len(data)
    stored = hashlib.sha256()
    for chunk in storage.get("cfg/id/data.tar.gz"):
        stored.update(chunk)
    assert stored.hexdigest() == hashlib.sha256(data).hexdigest()


def test_writer_accepts_bytearray_and_memoryview_chunks(storage: Storage) -> None:
    writer = storage.open_writer("k")
    writer.write(bytearray(b"abc"))
    writer.write(memoryview(b"defgh")[1:4])
    writer.commit()

    assert storage.get_bytes("k") == b"abcefg"


def test_empty_object_can_be_written_and_read(storage: Storage) -> None:
    info = storage.open_writer("empty").commit()

    assert info.size == 0
    assert storage.get_bytes("empty") == b""
    head = storage.head("empty")
    assert head is not None
    assert head.size == 0


def test_nothing_is_visible_before_commit(storage: Storage) -> None:
    writer = storage.open_writer("cfg/id/data")
    writer.write(os.urandom(6 * MIB))  # more than one part, so S3 has started uploading

    assert storage.head("cfg/id/data") is None
    assert keys(storage) == []
    with pytest.raises(ObjectNotFoundError):
        storage.get_bytes("cfg/id/data")

    writer.commit()
    assert keys(storage) == ["cfg/id/data"]


def test_aborted_upload_leaves_no_object_and_nothing_incomplete(storage: Storage) -> None:
    writer = storage.open_writer("cfg/id/data")
    writer.write(os.urandom(6 * MIB))

    writer.abort()
    writer.abort()  # idempotent

    assert storage.head("cfg/id/data") is None
    assert keys(storage) == []
    assert storage.abort_incomplete("") == 0


def test_upload_stopped_by_its_progress_callback_leaves_nothing_behind(storage: Storage) -> None:
    def cancel(transferred: int) -> None:
        raise CancelledError("cancelled on request")  # how a run stops from its progress hook

    writer = storage.open_writer("cfg/id/data", on_transfer=cancel)
    with pytest.raises(CancelledError):
        for _ in range(20):  # S3 reports progress only as each part finishes
            writer.write(os.urandom(MIB))
        writer.commit()

    assert storage.head("cfg/id/data") is None
    assert storage.abort_incomplete("") == 0
    with pytest.raises(ValueError, match="already"):
        writer.write(b"more")


def test_abort_after_commit_keeps_the_object(storage: Storage) -> None:
    writer = storage.open_writer("k")
    writer.write(b"kept")
    writer.commit()

    writer.abort()

    assert storage.get_bytes("k") == b"kept"


def test_a_finished_writer_refuses_more_data(storage: Storage) -> None:
    writer = storage.open_writer("k")
    writer.commit()

    with pytest.raises(ValueError, match="already"):
        writer.write(b"late")


def test_list_is_sorted_by_key_and_prefix_is_a_plain_string_prefix(storage: Storage) -> None:
    for key in ["b/2", "a/1", "a-b", "a/c/d", "ab", "c"]:
        storage.put_bytes(key, key.encode())

    assert keys(storage) == ["a-b", "a/1", "a/c/d", "ab", "b/2", "c"]
    assert keys(storage, "a") == ["a-b", "a/1", "a/c/d", "ab"]
    assert keys(storage, "a/") == ["a/1", "a/c/d"]
    assert keys(storage, "a/c") == ["a/c/d"]
    assert keys(storage, "zz") == []
    assert [info.size for info in storage.list("a/")] == [3, 5]


def test_delete_removes_the_object_and_a_missing_key_is_fine(storage: Storage) -> None:
    storage.put_bytes("cfg/id/backup.json", b"{}")
    storage.put_bytes("cfg/other", b"{}")

    storage.delete("cfg/id/backup.json")
    storage.delete("cfg/id/backup.json")
    storage.delete("never/existed")

    assert storage.head("cfg/id/backup.json") is None
    assert keys(storage) == ["cfg/other"]


def test_head_of_a_missing_key_is_none(storage: Storage) -> None:
    assert storage.head("missing") is None


def test_get_of_a_missing_key_raises_object_not_found(storage: Storage) -> None:
    with pytest.raises(ObjectNotFoundError, match="missing/key"):
        list(storage.get("missing/key"))
    with pytest.raises(ObjectNotFoundError):
        storage.get_bytes("missing/key")


def test_check_passes_and_leaves_no_probe_behind(storage: Storage) -> None:
    storage.check()

    assert keys(storage) == []


def test_abort_incomplete_discards_unfinished_uploads_under_the_prefix(storage: Storage) -> None:
    under = storage.open_writer("x/1")
    under.write(os.urandom(6 * MIB))
    elsewhere = storage.open_writer("y/1")
    elsewhere.write(os.urandom(6 * MIB))

    assert storage.abort_incomplete("x/") == 1
    assert storage.abort_incomplete("x/") == 0
    with pytest.raises(StorageError) as failure:
        under.commit()  # its upload is gone: committing must not pretend otherwise
    assert not isinstance(failure.value, ObjectNotFoundError)

    elsewhere.commit()
    assert keys(storage) == ["y/1"]
    assert storage.abort_incomplete("") == 0
