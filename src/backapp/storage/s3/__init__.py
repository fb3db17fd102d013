"""A storage backend on AWS S3 or any S3-compatible store; the only package that imports boto3.

The streamed multipart upload lives in ``writer.py``.

botocore's exceptions never leave this module: ``_storage_error`` translates them
into the StorageError tree with messages a user can act on.
"""

from __future__ import annotations

import io
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar, cast

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ChecksumError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    FlexibleChecksumError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
    ProxyConnectionError,
    ReadTimeoutError,
    ResponseStreamingError,
    SSLError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from backapp.errors import (
    ObjectNotFoundError,
    StorageConnectionError,
    StorageCredentialsError,
    StorageError,
    StoragePermissionError,
)
from backapp.storage.base import ObjectInfo, TransferCallback
from backapp.storage.wrappers import TokenBucket

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import GetObjectRequestTypeDef

    from backapp.storage.s3.writer import S3Writer

logger = logging.getLogger(__name__)
T = TypeVar("T")

MIB = 1024 * 1024
CHUNK_SIZE = MIB
MIN_PART_SIZE = 5 * MIB  # S3 refuses smaller parts, except the last
DEFAULT_PART_SIZE = 8 * MIB
MAX_PART_SIZE = 5 * 1024 * MIB
MAX_PARTS = 10_000
_GROW_EVERY = 2_000

CREDENTIALS_MESSAGE = (
    "AWS credentials not configured: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
    "(or use a profile or instance role)"
)
_ERRORS = (BotoCoreError, ClientError)
# Errors met while a response body is read: botocore does not retry those.
_STREAMING = (ResponseStreamingError, IncompleteReadError, ChecksumError, FlexibleChecksumError)


def part_size_for(part_number: int, base: int) -> int:
    """Given a 1-based part number and the base part size, return the size of that part.

    The size grows by ``base`` every 2,000 parts, so 10,000 parts of an 8 MiB base hold
    234 GiB (146 GiB from the 5 MiB minimum) while small uploads keep small buffers.
    """
    return min(base * (1 + (part_number - 1) // _GROW_EVERY), MAX_PART_SIZE)


def _connection_reason(exc: BaseException) -> str:
    """Given a botocore connection error, return a short reason such as 'Connection refused'."""
    if isinstance(exc, ConnectTimeoutError):
        return "connection timed out"
    if isinstance(exc, ReadTimeoutError):
        return "timed out waiting for a response"
    if isinstance(exc, ConnectionClosedError):
        return "the connection was closed by the server"
    if isinstance(exc, ProxyConnectionError):
        return "could not connect to the proxy"
    if isinstance(exc, SSLError):
        return "TLS handshake failed"
    # The socket error (refused, unknown host, …) hides a few causes down the chain.
    cause: BaseException | None = exc
    seen = 0
    while cause is not None and seen < 10:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
        cause = cause.__cause__ or cause.__context__
        seen += 1
    return "could not reach the endpoint"


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
    """Objects in an S3 bucket, reached with boto3's default credential chain."""

    def __init__(
        self,
        bucket: str,
        region: str,
        endpoint: str | None = None,
        *,
        part_size: int = DEFAULT_PART_SIZE,
        max_concurrency: int = 2,
        retries: int = 2,
        read_timeout: float = 30.0,
        upload_limit: TokenBucket | None = None,
        outage_budget: float = 0.0,
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
        self.retries = retries
        self.read_timeout = read_timeout
        self.outage_budget = outage_budget
        self.upload_limit = upload_limit  # uploads are paced as they are sent
        self._sleep = sleep  # how an outage is waited out (a run's cancel wakes it)
        self._cancelled = cancelled
        self._reached = False  # has any request through patient() had a reply?
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
            # The one place S3 requests are retried (RetryingStorage leaves them alone), and
            # a bound on each: a stalled endpoint fails a request within minutes, not hours.
            retries={"mode": "standard", "total_max_attempts": 1 + self.retries},
            connect_timeout=10,
            read_timeout=self.read_timeout,
            # S3-compatible stores rarely serve bucket subdomains; AWS prefers them.
            s3={"addressing_style": "path"} if self.endpoint else None,
            max_pool_connections=max(10, self.max_concurrency + 2),
        )
        try:
            client = session.client("s3", endpoint_url=self.endpoint, config=config)
        except (BotoCoreError, ValueError) as exc:
            raise StorageError(f"Cannot set up S3 access to bucket '{self.bucket}': {exc}") from exc
        client.meta.events.register("before-send.s3", _start_sending)
        return client

    def patient(self, request: Callable[[], T]) -> T:
        """Given an S3 request, make it, waiting out an endpoint that cannot be reached or
        drops connections (a server restarting) for up to ``outage_budget`` seconds; other
        failures (and read timeouts: a stall) are re-raised at once, as botocore left them.

        Only an endpoint that has answered before is waited for: one never reached (a wrong
        address, a port nothing listens on) is reported at once, not after a minute.
        """
        deadline = time.monotonic() + (self.outage_budget if self._reached else 0.0)
        delay = 1.0
        while True:
            try:
                result = request()
                self._reached = True
                return result
            except ClientError:
                self._reached = True  # an error reply is a reply
                raise
            except (BotoConnectionError, HTTPClientError) as exc:
                timed_out = isinstance(exc, ReadTimeoutError | ConnectTimeoutError)
                gone = self._cancelled is not None and self._cancelled()
                if timed_out or gone or time.monotonic() + delay > deadline:
                    raise
                logger.warning(
                    "S3 at %s unreachable (%s); trying again in %.0fs",
                    self._where(),
                    _connection_reason(exc),
                    delay,
                )
                self._sleep(delay)
                delay = min(delay * 2, 10.0)

    def body(self, data: bytes | bytearray) -> Any:
        """Given a request body, return it paced by the upload limit (if there is one)."""
        if self.upload_limit is None:
            return _blob(data) if isinstance(data, bytearray) else data
        return ThrottledBody(data, self.upload_limit)

    def _where(self) -> str:
        return self.endpoint or f"AWS ({self.region})"

    def _missing_bucket(self) -> StorageConnectionError:
        error = StorageConnectionError(
            f"Failed to connect to S3 bucket '{self.bucket}': the bucket does not exist "
            "(check the bucket name and region)"
        )
        error.transient = False  # waiting will not make the bucket appear
        return error

    def _storage_error(self, exc: BaseException, key: str | None = None) -> StorageError:
        """Given a botocore error (``key`` None for bucket-level calls), return a StorageError.

        Errors of a whole request were retried by botocore already (``retried``); a body
        that broke or failed its checksum while being read was not: a wrapper resumes it.
        """
        error = self._translate(exc, key)
        if not isinstance(exc, _STREAMING) and self.retries > 0 and error.transient:
            error.retried = True
        return error

    def _translate(self, exc: BaseException, key: str | None) -> StorageError:
        bucket = self.bucket
        if isinstance(exc, StorageError):
            return exc
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return StorageCredentialsError(CREDENTIALS_MESSAGE)
        if isinstance(exc, ResponseStreamingError | IncompleteReadError):
            return StorageConnectionError(
                f"Lost the connection to S3 bucket '{bucket}' at {self._where()} "
                f"while reading '{key}'"
            )
        if isinstance(exc, ChecksumError | FlexibleChecksumError):
            return StorageConnectionError(
                f"A response from S3 bucket '{bucket}' for '{key}' arrived damaged "
                "(its checksum did not match)"
            )
        if isinstance(exc, BotoConnectionError | HTTPClientError):
            return StorageConnectionError(
                f"Failed to connect to S3 bucket '{bucket}' at {self._where()}: "
                f"{_connection_reason(exc)}"
            )
        if isinstance(exc, ClientError):
            return self._client_error(exc, key)
        return StorageError(f"S3 request to bucket '{bucket}' failed: {exc}")

    def _client_error(self, exc: ClientError, key: str | None) -> StorageError:
        error = exc.response.get("Error", {})
        code = error.get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        on_key = f" for '{key}'" if key else ""
        if code == "NoSuchBucket" or (key is None and status == 404):
            return self._missing_bucket()
        if code == "NoSuchUpload":  # a 404 too, but the object was never the problem
            return StorageError(
                f"The upload of '{key}' to S3 bucket '{self.bucket}' was aborted elsewhere "
                "(NoSuchUpload), e.g. by a cleanup of unfinished uploads"
            )
        if code in ("NoSuchKey", "NotFound", "404") or status == 404:
            return ObjectNotFoundError(f"Object '{key}' not found in s3://{self.bucket}")
        if code == "InvalidAccessKeyId":
            return StoragePermissionError(
                "S3 does not know the AWS access key id (InvalidAccessKeyId): "
                "check AWS_ACCESS_KEY_ID"
            )
        if code == "SignatureDoesNotMatch":
            return StoragePermissionError(
                "S3 rejected the request signature (SignatureDoesNotMatch): "
                "check AWS_SECRET_ACCESS_KEY"
            )
        if code in ("ExpiredToken", "InvalidToken", "TokenRefreshRequired"):
            return StoragePermissionError(
                f"S3 rejected the AWS session token ({code}): refresh the credentials"
            )
        if code in ("AccessDenied", "AllAccessDisabled", "Forbidden", "403") or status == 403:
            return StoragePermissionError(
                f"Access denied to S3 bucket '{self.bucket}'{on_key}: check that the "
                "credentials may read, write, list and delete objects in it"
            )
        if code in ("PermanentRedirect", "AuthorizationHeaderMalformed", "301") or status == 301:
            wrong_region = StorageConnectionError(
                f"Failed to connect to S3 bucket '{self.bucket}': the bucket is in another "
                f"region than '{self.region}' (check the region)"
            )
            wrong_region.transient = False
            return wrong_region
        message = error.get("Message") or "no details"
        storage_error = StorageError(
            f"S3 request to bucket '{self.bucket}'{on_key} failed: {code or status}: {message}"
        )
        # botocore has already retried these; a wrapper may still try again later.
        storage_error.transient = status >= 500 or code in ("SlowDown", "RequestTimeout")
        return storage_error

    def open_writer(self, key: str, on_transfer: TransferCallback | None = None) -> S3Writer:
        from backapp.storage.s3.writer import S3Writer

        """Given a key, return a streamed multipart writer. Raise StorageCredentialsError."""
        return S3Writer(self, key, on_transfer)

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        """Given a key and a small payload, store it with one request. Raise StorageError."""
        try:
            client = self._client()
            self.patient(
                lambda: client.put_object(Bucket=self.bucket, Key=key, Body=self.body(data))
            )
        except _ERRORS as exc:
            raise self._storage_error(exc, key) from exc
        return ObjectInfo(key=key, size=len(data))

    def get(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Given a key and a byte range [start, end), yield its bytes in 1 MiB chunks.

        Raise ObjectNotFoundError if the key does not exist, StorageError otherwise.
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
            response = self.patient(lambda: client.get_object(**request))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                return  # the range starts at or past the end: nothing to read
            raise self._storage_error(exc, key) from exc
        except BotoCoreError as exc:
            raise self._storage_error(exc, key) from exc
        body = response["Body"]
        try:
            self._check_range(response, key)
            yield from body.iter_chunks(CHUNK_SIZE)
        except _ERRORS as exc:
            raise self._storage_error(exc, key) from exc
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
            response = self.patient(lambda: client.head_object(Bucket=self.bucket, Key=key))
        except _ERRORS as exc:
            error = self._storage_error(exc, key)
            if isinstance(error, ObjectNotFoundError):
                return None
            raise error from exc
        return ObjectInfo(key, response["ContentLength"], response["LastModified"])

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Given a key prefix, yield every object under it, sorted by key. Raise StorageError."""
        paginator = self._client().get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield ObjectInfo(item["Key"], item["Size"], item["LastModified"])
        except _ERRORS as exc:
            raise self._storage_error(exc) from exc

    def delete(self, key: str) -> None:
        """Given a key, remove the object; a missing key is not an error. Raise StorageError."""
        try:
            client = self._client()
            self.patient(lambda: client.delete_object(Bucket=self.bucket, Key=key))
        except _ERRORS as exc:
            error = self._storage_error(exc, key)
            if not isinstance(error, ObjectNotFoundError):
                raise error from exc

    def abort_incomplete(self, prefix: str) -> int:
        """Given a key prefix, abort the multipart uploads under it; return how many."""
        client = self._client()
        count = 0
        try:
            paginator = client.get_paginator("list_multipart_uploads")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for upload in page.get("Uploads", []):
                    try:
                        client.abort_multipart_upload(
                            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                        )
                    except ClientError as exc:
                        if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
                            raise
                        continue  # finished or aborted by its writer meanwhile
                    count += 1
        except _ERRORS as exc:
            raise self._storage_error(exc) from exc
        return count

    def check(self) -> None:
        """Check the bucket is reachable and writable with a probe object. Raise StorageError."""
        try:
            client = self._client()
            self.patient(lambda: client.head_bucket(Bucket=self.bucket))
        except _ERRORS as exc:
            raise self._storage_error(exc) from exc
        probe = f".backapp-probe-{secrets.token_hex(8)}"
        self.put_bytes(probe, b"backapp probe\n")
        self.delete(probe)
