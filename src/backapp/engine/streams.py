"""Small stream adapters between chunk iterators and file objects."""

from __future__ import annotations

import contextlib
import io
import queue
import threading
from collections.abc import Generator, Iterable, Iterator
from typing import IO, Any, TypeVar

T = TypeVar("T")

CHUNK = 1024 * 1024


class IterReader(io.RawIOBase):
    """A read-only file object over an iterator of byte chunks."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it = iter(chunks)
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while not self._buf:
            try:
                self._buf = next(self._it)
            except StopIteration:
                return 0
        n = min(len(view), len(self._buf))
        view[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def as_file(chunks: Iterable[bytes]) -> IO[bytes]:
    """Given byte chunks, return a buffered binary file object reading them."""
    return io.BufferedReader(IterReader(chunks), buffer_size=CHUNK)


def file_chunks(fileobj: IO[bytes], size: int = CHUNK) -> Iterator[bytes]:
    """Given a binary file object, yield its content in chunks."""
    while True:
        chunk = fileobj.read(size)
        if not chunk:
            return
        yield chunk


_DONE = object()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def prefetch(items: Iterable[T], depth: int = 4) -> Generator[T, None, None]:
    """Given an iterable, yield its items while a thread produces the next ones ahead.

    At most ``depth`` items wait in between, which bounds memory. An error in the
    producer is raised here; leaving the loop early stops the producer.
    """
    box: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def produce() -> None:
        try:
            _produce()
        finally:
            close = getattr(items, "close", None)
            if close is not None:  # a generator left half-way: let it release its stream
                close()

    def _produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        box.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            box.put(_DONE)
        except BaseException as exc:  # handed to the consumer
            box.put(_Failure(exc))

    thread = threading.Thread(target=produce, name="backapp-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = box.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            with contextlib.suppress(queue.Empty):
                box.get(timeout=0.05)
        thread.join()
