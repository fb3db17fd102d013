"""The streamed multipart upload of an S3 object."""

from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from backapp.errors import StorageError
from backapp.storage.base import ObjectInfo, TransferCallback
from backapp.storage.s3 import _ERRORS, MAX_PARTS, S3Storage, part_size_for

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import (
        CompletedPartTypeDef,
        CreateMultipartUploadRequestTypeDef,
        UploadPartRequestTypeDef,
    )

logger = logging.getLogger(__name__)


class S3Writer:
    """A streamed multipart upload: parts go up in the background while the caller writes.

    Each of its requests (create, every part, complete, abort) is tried as ``retry.py``
    says, with a fresh body each try; a lost reply to complete is checked against the
    object (HEAD) before the upload counts as failed.

    At most ``max_concurrency`` parts are in flight and one more is being filled, so
    memory stays near (max_concurrency + 1) × part size whatever the object's size.
    Any failure aborts the multipart upload. One thread writes; ``on_transfer`` is
    called on that thread.
    """

    def __init__(self, storage: S3Storage, key: str, on_transfer: TransferCallback | None) -> None:
        self._storage = storage
        self._client = storage._client()  # fail now, not at the first part, without credentials
        self._key = key
        self._on_transfer = on_transfer
        self._buffer = bytearray()
        self._filled = 0
        self._size = 0
        self._submitted = 0
        self._upload_id: str | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._pending: deque[Future[tuple[CompletedPartTypeDef, int]]] = deque()
        self._parts: list[CompletedPartTypeDef] = []
        self._finished = False
        # Mirror s3transfer: with botocore's default checksums, each part carries a CRC32.
        calculation = getattr(self._client.meta.config, "request_checksum_calculation", None)
        self._checksums = calculation in (None, "when_supported")

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Given a chunk, buffer it and upload each full part. Raise StorageError."""
        self._check_open()
        view = memoryview(data).cast("B")
        size = view.nbytes
        try:
            while view:
                target = part_size_for(self._submitted + 1, self._storage.part_size)
                if not self._buffer:
                    # Reserve the whole part once: growing it chunk by chunk reallocates
                    # (and for a moment holds two copies of) up to a part's worth.
                    self._buffer = bytearray(target)
                    self._filled = 0
                room = target - self._filled
                take = view[:room]
                self._buffer[self._filled : self._filled + len(take)] = take
                self._filled += len(take)
                view = view[len(take) :]
                if self._filled >= target:
                    self._submit_part()
            self._size += size
        except BaseException:
            self._abort_upload()
            raise

    def commit(self) -> ObjectInfo:
        """Upload what is left and complete the upload; return the object. Raise StorageError."""
        self._check_open()
        storage = self._storage
        try:
            if self._upload_id is None:
                body = self._take_buffer()
                try:
                    storage.call(
                        lambda: self._client.put_object(
                            Bucket=storage.bucket, Key=self._key, Body=storage.body(body)
                        )
                    )
                except _ERRORS as exc:
                    raise storage.storage_error(exc, self._key) from exc
                if self._on_transfer is not None:
                    self._on_transfer(len(body))
            else:
                if self._filled:
                    self._submit_part()
                while self._pending:
                    self._finish_oldest()
                try:
                    upload_id = self._upload_id
                    storage.call(
                        lambda: self._client.complete_multipart_upload(
                            Bucket=storage.bucket,
                            Key=self._key,
                            UploadId=upload_id,
                            MultipartUpload={"Parts": self._parts},
                        )
                    )
                except _ERRORS as exc:
                    # A lost reply (or a retry after one) may hide a completed upload.
                    if not self._completed_anyway():
                        raise storage.storage_error(exc, self._key) from exc
                    logger.warning("the upload of '%s' completed; its reply was lost", self._key)
        except BaseException:
            self._abort_upload()
            raise
        self._finished = True
        self._shutdown()
        return ObjectInfo(key=self._key, size=self._size)

    def _completed_anyway(self) -> bool:
        try:
            head = self._storage.head(self._key)
        except StorageError:
            return False
        return head is not None and head.size == self._size

    def abort(self) -> None:
        """Abort the multipart upload (best effort); a finished writer is left alone."""
        if not self._finished:
            self._abort_upload()

    def _check_open(self) -> None:
        if self._finished:
            raise ValueError(f"writer for {self._key!r} is already committed or aborted")

    def _submit_part(self) -> None:
        number = self._submitted + 1
        if number > MAX_PARTS:
            raise StorageError(f"Object '{self._key}' is too large for one S3 upload")
        if self._upload_id is None:
            self._upload_id = self._create_upload()
            self._executor = ThreadPoolExecutor(
                self._storage.max_concurrency, thread_name_prefix="backapp-s3-part"
            )
        assert self._executor is not None
        # Wait for a free slot first: this is what bounds memory to a few parts.
        while len(self._pending) >= self._storage.max_concurrency:
            self._finish_oldest()
        # Hand the buffer itself to the upload and start a new one: no copy of the part.
        body = self._take_buffer()
        self._pending.append(self._executor.submit(self._upload_part, number, body))
        self._submitted = number
        while self._pending and self._pending[0].done():
            self._finish_oldest()

    def _take_buffer(self) -> bytearray:
        """Return the filled part of the buffer, handing the buffer itself over if full."""
        body = self._buffer if self._filled == len(self._buffer) else self._buffer[: self._filled]
        self._buffer = bytearray()
        self._filled = 0
        return body

    def _create_upload(self) -> str:
        request: CreateMultipartUploadRequestTypeDef = {
            "Bucket": self._storage.bucket,
            "Key": self._key,
        }
        if self._checksums:
            request["ChecksumAlgorithm"] = "CRC32"
        try:
            return self._storage.call(lambda: self._client.create_multipart_upload(**request))[
                "UploadId"
            ]
        except _ERRORS as exc:
            raise self._storage.storage_error(exc, self._key) from exc

    def _upload_part(self, number: int, body: bytearray) -> tuple[CompletedPartTypeDef, int]:
        assert self._upload_id is not None
        request: UploadPartRequestTypeDef = {
            "Bucket": self._storage.bucket,
            "Key": self._key,
            "UploadId": self._upload_id,
            "PartNumber": number,
            "Body": self._storage.body(body),
        }
        if self._checksums:
            request["ChecksumAlgorithm"] = "CRC32"
        # A fresh body each try: a read one would send nothing the second time.
        response = self._storage.call(
            lambda: self._client.upload_part(**{**request, "Body": self._storage.body(body)})
        )
        part: CompletedPartTypeDef = {"ETag": response["ETag"], "PartNumber": number}
        if "ChecksumCRC32" in response:
            part["ChecksumCRC32"] = response["ChecksumCRC32"]
        return part, len(body)

    def _finish_oldest(self) -> None:
        future = self._pending.popleft()
        try:
            part, size = future.result()
        except _ERRORS as exc:
            raise self._storage.storage_error(exc, self._key) from exc
        self._parts.append(part)
        if self._on_transfer is not None:
            self._on_transfer(size)

    def _shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def _abort_upload(self) -> None:
        self._finished = True
        self._buffer = bytearray()
        self._filled = 0
        # Parts still uploading could land after the abort and keep costing storage.
        self._shutdown()
        self._pending.clear()
        if self._upload_id is None:
            return
        upload_id = self._upload_id
        try:
            self._storage.call(
                lambda: self._client.abort_multipart_upload(
                    Bucket=self._storage.bucket, Key=self._key, UploadId=upload_id
                )
            )
        except _ERRORS as exc:
            # Cleanup must not hide the error that brought us here; abort_incomplete
            # (or a bucket lifecycle rule) catches what is left behind.
            logger.warning(
                "could not abort the upload of '%s': %s",
                self._key,
                self._storage.storage_error(exc, self._key),
            )
