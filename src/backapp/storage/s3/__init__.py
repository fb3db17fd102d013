"""A storage backend on AWS S3 or any S3-compatible store; the only package that imports boto3.

The streamed multipart upload lives in ``writer.py``; every request is retried by the one
loop in ``retry.py`` (botocore's own retries are off); ``errors.py`` translates botocore's
exceptions into the StorageError tree with messages a user can act on: they never leave
this package.
"""

from __future__ import annotations

import io
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from backapp.errors import (
    ObjectNotFoundError,
    StorageConnectionError,
    StorageCredentialsError,
    StorageError,
)
from backapp.storage.base import ObjectInfo, TransferCallback
from backapp.storage.s3.errors import CREDENTIALS_MESSAGE, ERRORS, ErrorTranslator, not_implemented
from backapp.storage.s3.retry import STANDARD, RequestRetry, RetryPolicy
from backapp.storage.wrappers import TokenBucket

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import (
        GetObjectRequestTypeDef,
        ListMultipartUploadsRequestTypeDef,
        ListObjectsV2RequestTypeDef,
    )

    from backapp.storage.s3.writer import S3Writer

logger = logging.getLogger(__name__)
T = TypeVar("T")
AddressingStyle = Literal["auto", "path", "virtual"]

MIB = 1024 * 1024
CHUNK_SIZE = MIB
MIN_PART_SIZE = 5 * MIB  # S3 refuses smaller parts, except the last
DEFAULT_PART_SIZE = 8 * MIB
MAX_PART_SIZE = 5 * 1024 * MIB
MAX_PARTS = 10_000
_GROW_EVERY = 2_000
_ERRORS = ERRORS


def part_size_for(part_number: int, base: int) -> int:
    """Given a 1-based part number and the base part size, return the size of that part.

    The size grows by ``base`` every 2,000 parts, so 10,000 parts of an 8 MiB base hold
    234 GiB (146 GiB from the 5 MiB minimum) while small uploads keep small buffers.
    """
    return min(base * (1 + (part_number - 1) // _GROW_EVERY), MAX_PART_SIZE)


def _blob(data: bytearray) -> bytes:
    # botocore takes a bytearray body as it is (see botocore.validate and
    # AWSRequest.reset_stream); only the stubs say bytes. Copying each part to bytes
    # would cost one more part's worth of memory.
    return cast("bytes", data)


class ThrottledBody(io.RawIOBase):
    """A request body that, once it is being sent, is read no faster than its bucket
    allows: the upload itself is smooth (64 KiB at a time), not a burst per part.

    botocore reads bodies before sending too (checksums, payload signing): those reads
    are free; ``sending`` is set by the ``before-send`` event of each attempt.
    """

    _SLICE = 64 * 1024

    def __init__(self, data: bytes | bytearray, bucket: TokenBucket) -> None:
        self._view = memoryview(data).cast("B")
        self._bucket = bucket
        self._position = 0
        self.sending = False

    def __len__(self) -> int:
        return self._view.nbytes

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self)}[whence]
        self._position = max(0, min(len(self), base + offset))
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        left = len(self) - self._position
        if size is None or size < 0 or size > left:
            size = left
        if self.sending:
            size = min(size, self._SLICE)
            self._bucket.consume(size)
        chunk = self._view[self._position : self._position + size].tobytes()
        self._position += len(chunk)
        return chunk

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(memoryview(buffer)))
        memoryview(buffer)[: len(data)] = data
        return len(data)


def _start_sending(request: Any, **_: Any) -> None:
    body = getattr(request, "body", None)
    if isinstance(body, ThrottledBody):
        body.sending = True


class S3Storage:
    """Objects in an S3 bucket, reached with boto3's default credential chain.

    ``retry`` says how often a failed request is tried again (see ``retry.py``: at most 3
    tries by default; ``PATIENT`` also waits out an endpoint that stops answering for
    about a minute). ``addressing_style`` is botocore's (None: path for a custom
    endpoint, as S3-compatible stores rarely serve bucket subdomains; auto for AWS).
    """

    def __init__(
        self,
        bucket: str,
        region: str,
        endpoint: str | None = None,
        *,
        part_size: int = DEFAULT_PART_SIZE,
        max_concurrency: int = 2,
        retry: RetryPolicy = STANDARD,
        read_timeout: float = 30.0,
        upload_limit: TokenBucket | None = None,
        addressing_style: AddressingStyle | None = None,
        sleep: Callable[[float], Any] = time.sleep,
        cancelled: Callable[[], bool] | None = None,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum)")
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.bucket = bucket
        self.region = region
        self.endpoint = endpoint
        self.part_size = part_size
        self.max_concurrency = max_concurrency
        self.read_timeout = read_timeout
        self.addressing_style = addressing_style or ("path" if endpoint else "auto")
        self.upload_limit = upload_limit  # uploads are paced as they are sent
        self.errors = ErrorTranslator(bucket, region, endpoint)
        # The one place S3 requests are retried; a run's cancel-aware sleep wakes it.
        self.call = RequestRetry(retry, self.errors.where, sleep, cancelled)
        self._lists_uploads = True  # False once the server said it cannot (501)
        self._lock = threading.Lock()
        self._s3: S3Client | None = None

    @property
    def description(self) -> str:
        """Return ``s3://bucket``, plus `` at <endpoint>`` for a custom endpoint."""
        where = f" at {self.endpoint}" if self.endpoint else ""
        return f"s3://{self.bucket}{where}"

    def _client(self) -> S3Client:
        """Return the boto3 client, built on first use. Raise StorageCredentialsError."""
        with self._lock:
            if self._s3 is None:
                self._s3 = self._build_client()
            return self._s3

    def _build_client(self) -> S3Client:
        try:
            session = boto3.session.Session(region_name=self.region)
            credentials = session.get_credentials()
        except BotoCoreError as exc:  # e.g. AWS_PROFILE names a profile that does not exist
            raise StorageCredentialsError(f"AWS credentials could not be loaded: {exc}") from exc
        if credentials is None:
            raise StorageCredentialsError(CREDENTIALS_MESSAGE)
        config = Config(
            region_name=self.region,
            # One try per call: retry.py is the one place S3 requests are tried again.
            retries={"mode": "standard", "total_max_attempts": 1},
            connect_timeout=10,
            # A bound on each try: a stalled endpoint fails a request within minutes.
            read_timeout=self.read_timeout,
            s3={"addressing_style": self.addressing_style},
            max_pool_connections=max(10, self.max_concurrency + 2),
        )
        try:
            client = session.client("s3", endpoint_url=self.endpoint, config=config)
        except (BotoCoreError, ValueError) as exc:
            raise StorageError(f"Cannot set up S3 access to bucket '{self.bucket}': {exc}") from exc
        client.meta.events.register("before-send.s3", _start_sending)
        return client

    def body(self, data: bytes | bytearray) -> Any:
        """Given a request body, return it paced by the upload limit (if there is one)."""
        if self.upload_limit is None:
            return _blob(data) if isinstance(data, bytearray) else data
        return ThrottledBody(data, self.upload_limit)

    def storage_error(self, exc: BaseException, key: str | None = None) -> StorageError:
        """Given a botocore error (``key`` None for bucket-level calls), return a StorageError."""
        return self.errors.storage_error(exc, key)

    def open_writer(self, key: str, on_transfer: TransferCallback | None = None) -> S3Writer:
        """Given a key, return a streamed multipart writer. Raise StorageCredentialsError."""
        from backapp.storage.s3.writer import S3Writer

        return S3Writer(self, key, on_transfer)

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        """Given a key and a small payload, store it with one request. Raise StorageError."""
        try:
            client = self._client()
            # A fresh body each try: a read one would send nothing the second time.
            self.call(lambda: client.put_object(Bucket=self.bucket, Key=key, Body=self.body(data)))
        except _ERRORS as exc:
            raise self.storage_error(exc, key) from exc
        return ObjectInfo(key=key, size=len(data))

    def get(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Given a key and a byte range [start, end), yield its bytes in 1 MiB chunks.

        Raise ObjectNotFoundError if the key does not exist, StorageError otherwise (a body
        that breaks is not read again here: RetryingStorage resumes it).
        """
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"invalid byte range [{start}, {end})")
        if end == start:
            return
        request: GetObjectRequestTypeDef = {"Bucket": self.bucket, "Key": key}
        if start or end is not None:
            request["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            client = self._client()
            response = self.call(lambda: client.get_object(**request))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                return  # the range starts at or past the end: nothing to read
            raise self.storage_error(exc, key) from exc
        except BotoCoreError as exc:
            raise self.storage_error(exc, key) from exc
        body = response["Body"]
        try:
            self._check_range(response, key)
            yield from body.iter_chunks(CHUNK_SIZE)
        except _ERRORS as exc:
            raise self.storage_error(exc, key) from exc
        finally:
            body.close()

    def _check_range(self, response: Any, key: str) -> None:
        """A ranged reply whose length disagrees with its Content-Range was cut on the way
        (a proxy or a broken connection): raise a transient error, so it is read again."""
        content_range = response.get("ContentRange") or ""
        unit, _, span = content_range.partition(" ")
        first, _, rest = span.partition("-")
        last = rest.partition("/")[0]
        if unit != "bytes" or not first.isdigit() or not last.isdigit():
            return
        if response.get("ContentLength") != int(last) - int(first) + 1:
            raise StorageConnectionError(
                f"A reply from S3 bucket '{self.bucket}' for '{key}' came short "
                f"({response.get('ContentLength')} bytes for {content_range})"
            )

    def get_bytes(self, key: str) -> bytes:
        """Given a key, return the whole (small) object. Raise ObjectNotFoundError."""
        return b"".join(self.get(key))

    def head(self, key: str) -> ObjectInfo | None:
        """Given a key, return its ObjectInfo, or None if it does not exist. Raise StorageError."""
        try:
            client = self._client()
            response = self.call(lambda: client.head_object(Bucket=self.bucket, Key=key))
        except _ERRORS as exc:
            error = self.storage_error(exc, key)
            if isinstance(error, ObjectNotFoundError):
                return None
            raise error from exc
        return ObjectInfo(key, response["ContentLength"], response["LastModified"])

    def _list_page(self, prefix: str, token: str | None, max_keys: int = 1000) -> Any:
        """Given a prefix and a continuation token, return one page of the listing (each
        page is a request of its own, retried on its own). Raise StorageError."""
        request: ListObjectsV2RequestTypeDef = {
            "Bucket": self.bucket,
            "Prefix": prefix,
            "MaxKeys": max_keys,
        }
        if token:
            request["ContinuationToken"] = token
        try:
            client = self._client()
            page = self.call(lambda: client.list_objects_v2(**request))
        except _ERRORS as exc:
            raise self.storage_error(exc) from exc
        if "IsTruncated" not in page:  # botocore parses any XML (or HTML) without complaint
            raise self.errors.not_s3("its reply to ListObjectsV2 is not an S3 listing")
        return page

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Given a key prefix, yield every object under it, sorted by key. Raise StorageError."""
        token: str | None = None
        while True:
            page = self._list_page(prefix, token)
            for item in page.get("Contents", []):
                yield ObjectInfo(item["Key"], item["Size"], item["LastModified"])
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    def delete(self, key: str) -> None:
        """Given a key, remove the object; a missing key is not an error. Raise StorageError."""
        try:
            client = self._client()
            self.call(lambda: client.delete_object(Bucket=self.bucket, Key=key))
        except _ERRORS as exc:
            error = self.storage_error(exc, key)
            if not isinstance(error, ObjectNotFoundError):
                raise error from exc

    def abort_incomplete(self, prefix: str) -> int:
        """Given a key prefix, abort the multipart uploads under it; return how many.

        A store that cannot list unfinished uploads (501 NotImplemented, e.g. s3rver) has
        none to abort here: that is said once, and 0 returned. Raise StorageError.
        """
        if not self._lists_uploads:
            return 0
        client = self._client()
        count = 0
        request: ListMultipartUploadsRequestTypeDef = {"Bucket": self.bucket, "Prefix": prefix}
        try:
            while True:
                page = self.call(lambda: client.list_multipart_uploads(**request))
                for upload in page.get("Uploads", []):
                    count += self._abort(client, upload["Key"], upload["UploadId"])
                if not page.get("IsTruncated"):
                    return count
                request["KeyMarker"] = page.get("NextKeyMarker", "")
                request["UploadIdMarker"] = page.get("NextUploadIdMarker", "")
        except _ERRORS as exc:
            if (
                not_implemented(exc)
                and getattr(exc, "operation_name", "") == "ListMultipartUploads"
            ):
                self._lists_uploads = False
                logger.warning(
                    "S3 at %s cannot list unfinished uploads (501 NotImplemented): they are "
                    "not cleaned up here (a bucket lifecycle rule can expire them)",
                    self.errors.where,
                )
                return count
            raise self.storage_error(exc) from exc

    def _abort(self, client: S3Client, key: str, upload_id: str) -> int:
        """Abort one multipart upload; return 1, or 0 if it had finished meanwhile."""
        try:
            self.call(
                lambda: client.abort_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id
                )
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
                raise
            return 0  # finished or aborted by its writer meanwhile
        return 1

    def check(self) -> None:
        """Check the bucket answers as S3 (a listing) and is writable (a probe object).
        Raise StorageError."""
        self._list_page("", None, max_keys=1)
        probe = f".backapp-probe-{secrets.token_hex(8)}"
        self.put_bytes(probe, b"backapp probe\n")
        self.delete(probe)
