"""Retry and bandwidth limit as wrappers around any Storage, not flags inside each backend."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from backapp.errors import CancelledError, StorageError
from backapp.storage.base import ObjectInfo, ObjectWriter, Storage, TransferCallback

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Throttled data moves in slices no larger than this, so the rate looks smooth even
# when the caller hands over a whole 8 MiB part at once.
_SLICE = 64 * 1024


def _close(iterator: Iterator[object]) -> None:
    # Stop the inner generator now, so an S3 body goes back to the pool promptly.
    close = getattr(iterator, "close", None)
    if close is not None:
        close()


class RetryingStorage:
    """A Storage that retries what the inner one did not: transient failures not marked
    ``retried``, with exponential backoff (0.2 s, 0.4 s, 0.8 s), ``attempts`` tries in all.

    Each failure is retried in one place only. A backend that retries its own requests
    (S3: every request, see ``storage/s3/retry.py``) marks those errors ``retried`` and
    they pass through here at once; what is left for this wrapper is a stream that broke
    part-way — a download body (resumed from the first byte not delivered, the count
    starting afresh on progress) or a listing (resumed after the last key). Local errors
    are never transient. Writers are passed through: their requests are the backend's.
    """

    def __init__(
        self,
        inner: Storage,
        attempts: int = 4,
        base_delay: float = 0.2,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.inner = inner
        self.attempts = attempts
        self.base_delay = base_delay
        self._sleep = sleep

    @property
    def description(self) -> str:
        """Return the inner storage's description."""
        return self.inner.description

    def _backoff(self, failure: int, exc: StorageError) -> None:
        """Given the 1-based number of a failure, wait before the next try, or re-raise
        (at once if it is not transient or the backend has retried it already)."""
        if not exc.transient or exc.retried or failure >= self.attempts:
            raise exc
        delay = self.base_delay * 2 ** (failure - 1)
        logger.info("retrying in %.1fs after a transient storage error: %s", delay, exc)
        self._sleep(delay)

    def _call(self, operation: Callable[[], T]) -> T:
        failure = 0
        while True:
            try:
                return operation()
            except StorageError as exc:
                failure += 1
                self._backoff(failure, exc)

    def open_writer(self, key: str, on_transfer: TransferCallback | None = None) -> ObjectWriter:
        """Given a key, return the inner storage's writer."""
        return self.inner.open_writer(key, on_transfer)

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        """Given a key and a small payload, store it, retrying transient failures."""
        return self._call(lambda: self.inner.put_bytes(key, data))

    def get(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Given a key and a byte range [start, end), yield its bytes.

        A stream that breaks resumes from the first byte not yet delivered; the retry
        count starts afresh whenever the stream makes progress. Raise StorageError.
        """
        position = start
        failure = 0
        while True:
            chunks = self.inner.get(key, position, end)
            try:
                for chunk in chunks:
                    position += len(chunk)
                    failure = 0
                    yield chunk
                return
            except StorageError as exc:
                failure += 1
                self._backoff(failure, exc)
            finally:
                _close(chunks)

    def get_bytes(self, key: str) -> bytes:
        """Given a key, return the whole object, retrying transient failures."""
        return self._call(lambda: self.inner.get_bytes(key))

    def head(self, key: str) -> ObjectInfo | None:
        """Given a key, return its ObjectInfo or None, retrying transient failures."""
        return self._call(lambda: self.inner.head(key))

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Given a key prefix, yield the objects under it by key, resuming after a failure."""
        last: str | None = None
        failure = 0
        while True:
            objects = self.inner.list(prefix)
            try:
                for info in objects:
                    # Listings are sorted, so a fresh one skips what was already yielded.
                    if last is not None and info.key <= last:
                        continue
                    last = info.key
                    failure = 0
                    yield info
                return
            except StorageError as exc:
                failure += 1
                self._backoff(failure, exc)
            finally:
                _close(objects)

    def delete(self, key: str) -> None:
        """Given a key, remove the object, retrying transient failures."""
        self._call(lambda: self.inner.delete(key))

    def abort_incomplete(self, prefix: str) -> int:
        """Given a key prefix, discard unfinished uploads under it; return how many."""
        return self._call(lambda: self.inner.abort_incomplete(prefix))

    def check(self) -> None:
        """Check the inner storage, retrying transient failures. Raise StorageError."""
        self._call(self.inner.check)


class TokenBucket:
    """A token bucket: ``rate`` bytes per second, with a quarter of a second of burst (so
    any one-second window holds at most 1.25 seconds' worth).

    ``clock`` and ``sleep`` are injectable so tests need not wait in real time; a ``sleep``
    that returns true was interrupted, and the bucket stops holding data back.
    """

    def __init__(
        self,
        rate_bytes_per_second: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        if rate_bytes_per_second <= 0:
            raise ValueError("rate_bytes_per_second must be positive")
        self.rate = float(rate_bytes_per_second)
        self.capacity = max(1.0, self.rate / 4)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.capacity
        self._updated = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def consume(self, amount: int) -> None:
        """Given a byte count, block until the bucket allows sending that many bytes."""
        # Threads that share a bucket queue on the lock, which keeps their total on rate.
        remaining = float(amount)
        with self._lock:
            while remaining > 0:
                # More than a full bucket can never be available at once: take it in turns.
                take = min(remaining, self.capacity)
                self._refill()
                while self._tokens < take:
                    if self._sleep((take - self._tokens) / self.rate):
                        # A true answer means the wait was interrupted (the run is being
                        # cancelled): let the bytes through rather than wait on.
                        self._tokens = take
                        break
                    self._refill()
                self._tokens -= take
                remaining -= take


def _slices(data: bytes | bytearray | memoryview, size: int) -> Iterator[memoryview]:
    view = memoryview(data).cast("B")
    for offset in range(0, view.nbytes, size):
        yield view[offset : offset + size]


class ThrottledWriter:
    """A writer that waits for the upload bucket before passing each slice on."""

    def __init__(self, inner: ObjectWriter, bucket: TokenBucket, slice_size: int) -> None:
        self._inner = inner
        self._bucket = bucket
        self._slice_size = slice_size

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Given a chunk, pass it on at no more than the bucket's rate. Raise StorageError."""
        for piece in _slices(data, self._slice_size):
            self._bucket.consume(piece.nbytes)
            self._inner.write(piece)

    def commit(self) -> ObjectInfo:
        """Commit the inner writer and return the object. Raise StorageError."""
        return self._inner.commit()

    def abort(self) -> None:
        """Abort the inner writer."""
        self._inner.abort()


class ThrottledStorage:
    """A Storage whose uploads stay under the ``upload`` bucket's rate and downloads under
    the ``download`` bucket's (either may be None: not limited)."""

    def __init__(
        self, inner: Storage, upload: TokenBucket | None, download: TokenBucket | None
    ) -> None:
        self.inner = inner
        self.upload = upload
        self.download = download

    @staticmethod
    def _slice(bucket: TokenBucket) -> int:
        return max(1, min(_SLICE, int(bucket.capacity)))

    @property
    def description(self) -> str:
        """Return the inner storage's description."""
        return self.inner.description

    def open_writer(self, key: str, on_transfer: TransferCallback | None = None) -> ObjectWriter:
        """Given a key, return a writer throttled to the upload rate."""
        inner = self.inner.open_writer(key, on_transfer)
        if self.upload is None:
            return inner
        return ThrottledWriter(inner, self.upload, self._slice(self.upload))

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        """Given a key and a payload, wait for the upload bucket, then store it."""
        if self.upload is not None:
            self.upload.consume(len(data))
        return self.inner.put_bytes(key, data)

    def get(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Given a key and a byte range [start, end), yield its bytes at the download rate."""
        chunks = self.inner.get(key, start, end)
        bucket = self.download
        try:
            for chunk in chunks:
                if bucket is None:
                    yield chunk
                    continue
                for piece in _slices(chunk, self._slice(bucket)):
                    bucket.consume(piece.nbytes)
                    yield piece.tobytes()
        finally:
            _close(chunks)

    def get_bytes(self, key: str) -> bytes:
        """Given a key, return the whole object, read at the download rate."""
        return b"".join(self.get(key))

    def head(self, key: str) -> ObjectInfo | None:
        """Given a key, return its ObjectInfo or None."""
        return self.inner.head(key)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Given a key prefix, yield the objects under it by key."""
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        """Given a key, remove the object."""
        self.inner.delete(key)

    def abort_incomplete(self, prefix: str) -> int:
        """Given a key prefix, discard unfinished uploads under it; return how many."""
        return self.inner.abort_incomplete(prefix)

    def check(self) -> None:
        """Check the inner storage. Raise StorageError."""
        self.inner.check()


class _Call:
    """One storage call run on a daemon thread of its own, so its caller can stop waiting."""

    def __init__(self, operation: Callable[[], T]) -> None:
        self._operation = operation
        self.done = threading.Event()
        self.value: object = None
        self.error: BaseException | None = None
        threading.Thread(target=self._run, name="backapp-storage-call", daemon=True).start()

    def _run(self) -> None:
        try:
            self.value = self._operation()
        except BaseException as exc:  # handed to the waiting caller
            self.error = exc
        finally:
            self.done.set()


class CancellableStorage:
    """A Storage whose calls stop waiting soon after ``cancelled()`` turns true, even while a
    request hangs (a stalled endpoint): each call runs on a thread of its own, and the caller
    gives up on it ``grace`` seconds after the cancel (``after_cancel`` seconds for a call
    made after it: the clean-up of a cancelled run still gets its chance) and raises
    CancelledError. An abandoned request ends by its own timeouts.
    """

    def __init__(
        self,
        inner: Storage,
        cancelled: Callable[[], bool],
        *,
        grace: float = 2.0,
        after_cancel: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self._cancelled = cancelled
        self._grace = grace
        self._after_cancel = after_cancel
        self._clock = clock

    @property
    def description(self) -> str:
        """Return the inner storage's description."""
        return self.inner.description

    def run(self, operation: Callable[[], T]) -> T:
        """Given a storage call, run it and return its result, or raise CancelledError."""
        deadline = self._clock() + self._after_cancel if self._cancelled() else None
        call = _Call(operation)
        while not call.done.wait(0.1):
            if deadline is None and self._cancelled():
                deadline = self._clock() + self._grace
            if deadline is not None and self._clock() >= deadline:
                raise CancelledError("cancelled while waiting for storage (request abandoned)")
        if call.error is not None:
            raise call.error
        return call.value  # type: ignore[return-value]

    def _stream(self, chunks: Iterator[T]) -> Iterator[T]:
        abandoned = False
        try:
            while True:
                try:
                    item = self.run(lambda: next(chunks, _END))
                except CancelledError:
                    abandoned = True  # its thread may still be inside the generator
                    raise
                if item is _END:
                    return
                yield item  # type: ignore[misc]
        finally:
            if not abandoned:
                _close(chunks)

    def open_writer(self, key: str, on_transfer: TransferCallback | None = None) -> ObjectWriter:
        """Given a key, return a writer whose calls stop waiting on cancel."""
        return _CancellableWriter(self, self.run(lambda: self.inner.open_writer(key, on_transfer)))

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        """Given a key and a small payload, store it (or raise CancelledError)."""
        return self.run(lambda: self.inner.put_bytes(key, data))

    def get(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Given a key and a byte range [start, end), yield its bytes (or raise CancelledError)."""
        return self._stream(iter(self.inner.get(key, start, end)))

    def get_bytes(self, key: str) -> bytes:
        """Given a key, return the whole object (or raise CancelledError)."""
        return self.run(lambda: self.inner.get_bytes(key))

    def head(self, key: str) -> ObjectInfo | None:
        """Given a key, return its ObjectInfo or None (or raise CancelledError)."""
        return self.run(lambda: self.inner.head(key))

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Given a key prefix, yield the objects under it by key (or raise CancelledError)."""
        return self._stream(iter(self.inner.list(prefix)))

    def delete(self, key: str) -> None:
        """Given a key, remove the object (or raise CancelledError)."""
        self.run(lambda: self.inner.delete(key))

    def abort_incomplete(self, prefix: str) -> int:
        """Given a key prefix, discard unfinished uploads under it; return how many."""
        return self.run(lambda: self.inner.abort_incomplete(prefix))

    def check(self) -> None:
        """Check the inner storage (or raise CancelledError)."""
        self.run(self.inner.check)


_END = object()


class _CancellableWriter:
    def __init__(self, owner: CancellableStorage, inner: ObjectWriter) -> None:
        self._owner = owner
        self._inner = inner

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._owner.run(lambda: self._inner.write(data))

    def commit(self) -> ObjectInfo:
        return self._owner.run(self._inner.commit)

    def abort(self) -> None:
        try:
            self._owner.run(self._inner.abort)
        except CancelledError:
            logger.warning("gave up waiting for an upload to abort; the next run removes it")
