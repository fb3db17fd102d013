"""Block compression: the tar stream cut into fixed-size blocks, each compressed
independently (gzip members or zstd frames) on a small thread pool.

Concatenated gzip members are still one valid ``.gz`` file (``tar xzf`` reads
it) and concatenated zstd frames one valid ``.zst``; independent blocks let
compression use every core, and let restore start reading at any block.
"""

from __future__ import annotations

import queue
import threading
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Generic, Literal, TypeVar

import zstandard

from backapp.errors import ArchiveError

Algorithm = Literal["gzip", "zstd", "none"]


def _deflate_module() -> ModuleType:
    # zlib-ng deflates the same format about 1.7x faster than zlib at the same level.
    try:
        from zlib_ng import zlib_ng
    except ImportError:  # pragma: no cover - a platform without the wheel
        return zlib
    return zlib_ng


_deflate = _deflate_module()
DEFAULT_BLOCK_SIZE = 1024 * 1024


@dataclass(frozen=True)
class Codec:
    """A compression algorithm at a level: compress and decompress one block."""

    algorithm: Algorithm
    level: int | None

    @property
    def suffix(self) -> str:
        """Return the archive's file suffix after ``.tar``."""
        return {"gzip": ".gz", "zstd": ".zst", "none": ""}[self.algorithm]

    def compress(self, block: bytes | bytearray | memoryview) -> bytes:
        """Given a block, return it compressed as a standalone gzip member / zstd frame."""
        if self.algorithm == "gzip":
            comp = _deflate.compressobj(self.level or 6, zlib.DEFLATED, 31)
            return bytes(comp.compress(block) + comp.flush())
        if self.algorithm == "zstd":
            return bytes(_zstd_compressor(self.level or 3).compress(block))
        return bytes(block)

    def decompress(self, data: bytes, expected: int | None = None) -> bytes:
        """Given one compressed block (and the length it must have), return its content;
        never more than that length is produced (a hostile block cannot blow up in memory).
        Raise ArchiveError."""
        out: bytes
        try:
            if self.algorithm == "gzip":
                dec = _deflate.decompressobj(31)
                out = bytes(dec.decompress(data, (expected + 1) if expected is not None else 0))
                if dec.unconsumed_tail or not dec.eof or dec.unused_data:
                    raise ArchiveError("archive block is damaged (gzip member incomplete)")
            elif self.algorithm == "zstd":
                bound = {}
                if expected is not None:
                    # The frame says its size: a larger one is refused before allocating it.
                    if zstandard.frame_content_size(data) > expected:
                        raise ArchiveError("archive block is damaged (larger than a block)")
                    bound = {"max_output_size": max(1, expected)}
                out = bytes(_zstd_decompressor().decompress(data, **bound))
            else:
                out = data
        except (zlib.error, _deflate.error, zstandard.ZstdError) as exc:
            raise ArchiveError(f"archive block is damaged ({exc})") from exc
        if expected is not None and len(out) != expected:
            raise ArchiveError(
                f"archive block is damaged (expected {expected} bytes, got {len(out)})"
            )
        return out


_local = threading.local()


def _zstd_compressor(level: int) -> Any:
    # ZstdCompressor objects are not thread-safe: one per thread and level.
    cache: dict[int, Any] = _local.__dict__.setdefault("zc", {})
    if level not in cache:
        cache[level] = zstandard.ZstdCompressor(level=level, write_content_size=True)
    return cache[level]


def _zstd_decompressor() -> Any:
    if not hasattr(_local, "zd"):
        _local.zd = zstandard.ZstdDecompressor()
    return _local.zd


def codec_named(algorithm: str) -> Codec:
    """Given an algorithm's name as stored ("gzip", "zstd", "none"), return a Codec to
    decompress with. Raise ArchiveError for any other name."""
    if algorithm == "gzip":
        return Codec("gzip", None)
    if algorithm == "zstd":
        return Codec("zstd", None)
    if algorithm == "none":
        return Codec("none", None)
    raise ArchiveError(f"unknown compression {algorithm[:20]!r}")


def codec_for(compression: bool, algorithm: str, level: int) -> Codec:
    """Given a config's compression options, return the Codec."""
    if not compression:
        return Codec("none", None)
    if algorithm == "zstd":
        return Codec("zstd", level)
    return Codec("gzip", level)


class _Aborted(Exception):
    """Private marker: the pipeline was stopped by its caller (not a failure to report)."""


_In = TypeVar("_In")
_Out = TypeVar("_Out")


class BlockPipeline(Generic[_In, _Out]):
    """Compresses blocks on a thread pool and hands them, in order, to ``sink`` on a thread
    of its own, so the caller only reads files while compression, encryption and upload
    happen beside it. At most ``depth`` blocks wait, which bounds memory.

    Any exception on any of its threads (compression or sink, of any type) is raised to
    the caller at its next ``submit`` or at ``close``; ``close`` also checks that every
    submitted block reached the sink, so a block can never be dropped silently.
    """

    def __init__(
        self,
        compress: Callable[[_In], _Out],
        sink: Callable[[_Out], None],
        *,
        workers: int = 2,
        depth: int = 4,
        interrupt: Callable[[], None] | None = None,
    ) -> None:
        self._compress = compress
        self._interrupt = interrupt
        self._sink = sink
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="backapp-block")
        self._queue: queue.Queue[Future[_Out] | None] = queue.Queue(maxsize=max(1, depth))
        self._error: BaseException | None = None
        self.submitted = 0
        self.delivered = 0
        self._thread = threading.Thread(target=self._drain, name="backapp-upload", daemon=True)
        self._thread.start()

    def submit(self, block: _In) -> None:
        """Given the next block, queue it (waiting while the pipeline is full). Re-raise a
        failure of the compression or sink side, or what ``interrupt`` raises meanwhile."""
        self._raise()
        future = self._pool.submit(self._compress, block)
        self.submitted += 1
        while True:
            try:
                self._queue.put(future, timeout=0.2)
                return
            except queue.Full:
                # A slow upload (a bandwidth limit) keeps the queue full: stay cancellable.
                if self._interrupt is not None:
                    self._interrupt()
                self._raise()

    def close(self) -> None:
        """Wait until every block went through the sink; re-raise any failure there.

        Raise ArchiveError if fewer blocks reached the sink than were submitted.
        """
        self._queue.put(None)
        self._thread.join()
        self._pool.shutdown(wait=True)
        self._raise()
        if self.delivered != self.submitted:
            raise ArchiveError(
                f"the block pipeline stored {self.delivered} of {self.submitted} blocks"
            )

    def abort(self) -> None:
        """Stop: drop queued blocks and wait for the threads (never raises)."""
        if self._error is None:
            self._error = _Aborted()
        self._queue.put(None)
        self._thread.join()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _raise(self) -> None:
        error = self._error
        if error is None or isinstance(error, _Aborted):
            return
        raise error

    def _drain(self) -> None:
        while True:
            future = self._queue.get()
            if future is None:
                return
            if self._error is not None:
                future.cancel()  # failed or aborted: keep emptying the queue, do nothing
                continue
            try:
                self._sink(future.result())
                self.delivered += 1
            except BaseException as exc:  # handed to the caller on its next submit/close
                self._error = exc
