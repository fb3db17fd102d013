"""Retry and bandwidth-limit wrappers, driven by a flaky store and a fake clock."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backapp.errors import (
    ObjectNotFoundError,
    StorageConnectionError,
    StorageError,
    StoragePermissionError,
)
from backapp.storage import (
    LocalStorage,
    ObjectInfo,
    ObjectWriter,
    RetryingStorage,
    Storage,
    ThrottledStorage,
    TokenBucket,
    TransferCallback,
)


def connection_lost() -> StorageConnectionError:
    return StorageConnectionError("Failed to connect to S3 bucket 'b' at AWS: connection reset")


class FlakyStorage:
    """A LocalStorage whose operations fail on demand, recording every call."""

    def __init__(self, root: Path) -> None:
        self.inner = LocalStorage(root)
        self.failures: dict[str, list[StorageError]] = {}
        self.calls: list[tuple[str, tuple[object, ...]]] = []
        # For get: after how many bytes each successive stream breaks.
        self.breaks_after: list[int] = []
        # For list: after how many objects each successive listing breaks.
        self.list_breaks_after: list[int] = []

    @property
    def description(self) -> str:
        return "flaky"

    def _enter(self, operation: str, *args: object) -> None:
        self.calls.append((operation, args))
        pending = self.failures.get(operation)
        if pending:
            raise pending.pop(0)

    def count(self, operation: str) -> int:
        return sum(1 for name, _ in self.calls if name == operation)

    def open_writer(self, key: str, on_transfer: TransferCallback | None = None) -> ObjectWriter:
        self._enter("open_writer", key)
        return self.inner.open_writer(key, on_transfer)

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        self._enter("put_bytes", key)
        return self.inner.put_bytes(key, data)

    def get(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        self._enter("get", key, start, end)
        limit = self.breaks_after.pop(0) if self.breaks_after else None
        sent = 0
        data = b"".join(self.inner.get(key, start, end))
        for offset in range(0, len(data), 1000):
            if limit is not None and sent >= limit:
                raise connection_lost()
            chunk = data[offset : offset + 1000]
            sent += len(chunk)
            yield chunk

    def get_bytes(self, key: str) -> bytes:
        self._enter("get_bytes", key)
        return self.inner.get_bytes(key)

    def head(self, key: str) -> ObjectInfo | None:
        self._enter("head", key)
        return self.inner.head(key)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        self._enter("list", prefix)
        limit = self.list_breaks_after.pop(0) if self.list_breaks_after else None
        for count, info in enumerate(self.inner.list(prefix)):
            if limit is not None and count >= limit:
                raise connection_lost()
            yield info

    def delete(self, key: str) -> None:
        self._enter("delete", key)
        self.inner.delete(key)

    def abort_incomplete(self, prefix: str) -> int:
        self._enter("abort_incomplete", prefix)
        return self.inner.abort_incomplete(prefix)

    def check(self) -> None:
        self._enter("check")
        self.inner.check()


class FakeClock:
    """A monotonic clock that only moves when something sleeps on it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def flaky(tmp_path: Path) -> FlakyStorage:
    return FlakyStorage(tmp_path / "store")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_transient_failures_are_retried_with_exponential_backoff(
    flaky: FlakyStorage, clock: FakeClock
) -> None:
    flaky.failures["put_bytes"] = [connection_lost() for _ in range(3)]
    storage = RetryingStorage(flaky, attempts=4, base_delay=0.2, sleep=clock.sleep)

    storage.put_bytes("k", b"data")

    assert flaky.inner.get_bytes("k") == b"data"
    assert flaky.count("put_bytes") == 4
    assert clock.sleeps == pytest.approx([0.2, 0.4, 0.8])


def test_retrying_gives_up_with_the_last_error_after_all_attempts(
    flaky: FlakyStorage, clock: FakeClock
) -> None:
    flaky.failures["head"] = [connection_lost() for _ in range(4)]
    storage = RetryingStorage(flaky, attempts=4, sleep=clock.sleep)

    with pytest.raises(StorageConnectionError, match="Failed to connect"):
        storage.head("k")

    assert flaky.count("head") == 4
    assert len(clock.sleeps) == 3


@pytest.mark.parametrize(
    "error",
    [
        StoragePermissionError("Access denied to S3 bucket 'b'"),
        ObjectNotFoundError("Object 'k' not found"),
        StorageError("Cannot write /x: No space left on device"),
    ],
)
def test_non_transient_errors_are_raised_at_once(
    flaky: FlakyStorage, clock: FakeClock, error: StorageError
) -> None:
    flaky.failures["get_bytes"] = [error]
    storage = RetryingStorage(flaky, sleep=clock.sleep)

    with pytest.raises(type(error)):
        storage.get_bytes("k")

    assert flaky.count("get_bytes") == 1
    assert clock.sleeps == []


def test_every_single_request_operation_is_retried(flaky: FlakyStorage, clock: FakeClock) -> None:
    storage = RetryingStorage(flaky, sleep=clock.sleep)
    flaky.inner.put_bytes("k", b"data")
    operations = {
        "head": lambda: storage.head("k"),
        "get_bytes": lambda: storage.get_bytes("k"),
        "delete": lambda: storage.delete("gone"),
        "abort_incomplete": lambda: storage.abort_incomplete(""),
        "check": storage.check,
    }
    for name, operation in operations.items():
        flaky.failures[name] = [connection_lost()]
        operation()
        assert flaky.count(name) == 2, name


def test_writers_are_passed_through_without_retry(flaky: FlakyStorage, clock: FakeClock) -> None:
    flaky.failures["open_writer"] = [connection_lost()]
    storage = RetryingStorage(flaky, sleep=clock.sleep)

    with pytest.raises(StorageConnectionError):
        storage.open_writer("k")

    assert flaky.count("open_writer") == 1


def test_get_resumes_from_the_first_byte_not_yet_delivered(
    flaky: FlakyStorage, clock: FakeClock
) -> None:
    data = os.urandom(10_000)
    flaky.inner.put_bytes("k", data)
    flaky.breaks_after = [3000, 4000]
    storage = RetryingStorage(flaky, sleep=clock.sleep)

    assert b"".join(storage.get("k", 100, 9500)) == data[100:9500]

    requests = [args for name, args in flaky.calls if name == "get"]
    assert requests == [("k", 100, 9500), ("k", 3100, 9500), ("k", 7100, 9500)]


def test_get_that_keeps_breaking_without_progress_gives_up(
    flaky: FlakyStorage, clock: FakeClock
) -> None:
    flaky.inner.put_bytes("k", os.urandom(5000))
    flaky.breaks_after = [0, 2000, 0, 0, 0]
    storage = RetryingStorage(flaky, attempts=3, sleep=clock.sleep)
    received = bytearray()

    with pytest.raises(StorageConnectionError):
        for chunk in storage.get("k"):
            received += chunk

    assert len(received) == 2000
    assert flaky.count("get") == 4  # progress on the second stream earned a fresh count


def test_list_resumes_after_the_last_key_it_yielded(flaky: FlakyStorage, clock: FakeClock) -> None:
    for key in ("a", "b", "c", "d"):
        flaky.inner.put_bytes(key, b"x")
    flaky.list_breaks_after = [2]
    storage = RetryingStorage(flaky, sleep=clock.sleep)

    assert [info.key for info in storage.list("")] == ["a", "b", "c", "d"]
    assert flaky.count("list") == 2


def test_token_bucket_allows_a_quarter_second_of_burst_then_holds_the_rate(
    clock: FakeClock,
) -> None:
    bucket = TokenBucket(1000, clock=clock, sleep=clock.sleep)

    bucket.consume(250)
    assert clock.now == 0

    bucket.consume(500)
    assert clock.now == pytest.approx(0.5)

    bucket.consume(3000)  # more than the capacity is paid for in turns
    assert clock.now == pytest.approx(3.5)


def test_token_bucket_refills_while_idle_but_never_beyond_its_capacity(clock: FakeClock) -> None:
    bucket = TokenBucket(1000, clock=clock, sleep=clock.sleep)
    bucket.consume(250)

    clock.now += 60  # a long pause must not bank a minute of burst
    bucket.consume(250)
    assert clock.sleeps == []

    bucket.consume(100)
    assert clock.sleeps == [pytest.approx(0.1)]


def _limited(inner: Storage, rate: int, clock: FakeClock | None = None) -> ThrottledStorage:
    if clock is None:
        return ThrottledStorage(inner, TokenBucket(rate), TokenBucket(rate))
    upload = TokenBucket(rate, clock=clock, sleep=clock.sleep)
    return ThrottledStorage(inner, upload, TokenBucket(rate, clock=clock, sleep=clock.sleep))


def test_throttled_writer_keeps_to_the_rate_in_small_steps(
    tmp_path: Path, clock: FakeClock
) -> None:
    inner = LocalStorage(tmp_path)
    storage = _limited(inner, 10_000, clock)
    data = os.urandom(100_000)
    writes: list[int] = []

    writer = storage.open_writer("k", on_transfer=writes.append)
    writer.write(data)  # one big chunk, as the engine hands over a whole part
    writer.commit()

    assert inner.get_bytes("k") == data
    assert clock.now == pytest.approx(9.75)  # a quarter second of burst, then 10 kB/s
    assert max(writes) <= 2_500
    assert max(clock.sleeps) <= 0.25


def test_throttled_get_and_put_bytes_keep_to_the_rate(tmp_path: Path, clock: FakeClock) -> None:
    inner = LocalStorage(tmp_path)
    storage = _limited(inner, 10_000, clock)
    data = os.urandom(50_000)

    storage.put_bytes("k", data)
    assert clock.now == pytest.approx(4.75)

    assert b"".join(storage.get("k")) == data
    assert clock.now == pytest.approx(9.5)  # downloads have a bucket of their own


def test_throttled_upload_takes_real_time_at_the_configured_rate(tmp_path: Path) -> None:
    inner = LocalStorage(tmp_path)
    storage = _limited(inner, 100 * 1024)
    data = os.urandom(300 * 1024)

    started = time.monotonic()
    writer = storage.open_writer("k")
    for offset in range(0, len(data), 64 * 1024):
        writer.write(data[offset : offset + 64 * 1024])
    writer.commit()
    elapsed = time.monotonic() - started

    # 25 KiB of burst, then 275 KiB at 100 KiB/s.
    assert 2.6 <= elapsed <= 3.6
    assert inner.get_bytes("k") == data
