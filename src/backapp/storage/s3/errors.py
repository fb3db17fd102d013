"""botocore's exceptions translated into the StorageError tree, with messages a user can act
on; and the one rule of which S3 answers are worth trying again."""

from __future__ import annotations

from urllib.parse import urlsplit

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

CREDENTIALS_MESSAGE = (
    "AWS credentials not configured: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
    "(or use a profile or instance role)"
)
ERRORS = (BotoCoreError, ClientError)
# Errors met while a response body is read: not a request failure (RetryingStorage resumes).
STREAMING = (ResponseStreamingError, IncompleteReadError, ChecksumError, FlexibleChecksumError)
_THROTTLED = ("SlowDown", "RequestTimeout", "Throttling", "ThrottlingException", "RequestThrottled")


def transient_reply(status: int, code: str) -> bool:
    """Given an S3 error reply's HTTP status and code, return whether trying again may help:
    5xx (but 501 NotImplemented: the server lacks the operation), 429 and throttling codes."""
    if status == 501 or code == "NotImplemented":
        return False
    return status >= 500 or status == 429 or code in _THROTTLED


def not_implemented(exc: BaseException) -> bool:
    """Given a botocore error, return whether the server said it lacks the operation (501)."""
    if not isinstance(exc, ClientError):
        return False
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return status == 501 or exc.response.get("Error", {}).get("Code") == "NotImplemented"


def connection_reason(exc: BaseException) -> str:
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


def _permanent(error: StorageError) -> StorageError:
    error.transient = False
    return error


class ErrorTranslator:
    """Turns botocore errors of one bucket (at one endpoint) into StorageErrors."""

    def __init__(self, bucket: str, region: str, endpoint: str | None) -> None:
        self.bucket = bucket
        self.region = region
        self.endpoint = endpoint

    @property
    def where(self) -> str:
        """Return the endpoint, or ``AWS (<region>)``."""
        return self.endpoint or f"AWS ({self.region})"

    def _endpoint_path(self) -> str:
        return urlsplit(self.endpoint).path.rstrip("/") if self.endpoint else ""

    def _path_error(self) -> StorageConnectionError | None:
        # botocore puts the bucket after the endpoint's path: a server at the root then
        # takes the path for the bucket name, and nothing is found.
        path = self._endpoint_path()
        if not path or self.endpoint is None:
            return None
        root = self.endpoint.rstrip("/").removesuffix(path)
        return StorageConnectionError(
            f"Failed to connect to S3 bucket '{self.bucket}' at {self.endpoint}: the endpoint "
            f"URL has a path ('{path}'), but S3 servers answer at the root: use {root}"
        )

    def missing_bucket(self) -> StorageError:
        """Return the error of a bucket that is not there (or of an endpoint with a path)."""
        error = self._path_error() or StorageConnectionError(
            f"Failed to connect to S3 bucket '{self.bucket}': the bucket does not exist "
            "(check the bucket name and region)"
        )
        return _permanent(error)  # waiting will not make the bucket appear

    def not_s3(self, what: str) -> StorageError:
        """Given what the endpoint answered, return the error of a server that is not S3."""
        error = self._path_error() or StorageConnectionError(
            f"The endpoint {self.where} does not answer as an S3 server ({what}): check the "
            "endpoint URL"
        )
        return _permanent(error)

    def storage_error(self, exc: BaseException, key: str | None = None) -> StorageError:
        """Given a botocore error (``key`` None for bucket-level calls), return a StorageError.

        Errors of a whole request were retried by retry.py already (``retried``); a body
        that broke or failed its checksum while being read was not: a wrapper resumes it.
        """
        error = self._translate(exc, key)
        if not isinstance(exc, STREAMING) and error.transient:
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
                f"Lost the connection to S3 bucket '{bucket}' at {self.where} while reading '{key}'"
            )
        if isinstance(exc, ChecksumError | FlexibleChecksumError):
            return StorageConnectionError(
                f"A response from S3 bucket '{bucket}' for '{key}' arrived damaged "
                "(its checksum did not match)"
            )
        if isinstance(exc, BotoConnectionError | HTTPClientError):
            return StorageConnectionError(
                f"Failed to connect to S3 bucket '{bucket}' at {self.where}: "
                f"{connection_reason(exc)}"
            )
        if isinstance(exc, ClientError):
            return self._client_error(exc, key)
        return StorageError(f"S3 request to bucket '{bucket}' failed: {exc}")

    def _client_error(self, exc: ClientError, key: str | None) -> StorageError:
        error = exc.response.get("Error", {})
        code = error.get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        operation = exc.operation_name
        on_key = f" for '{key}'" if key else ""
        # An S3 server answers every failed request but HEAD with an error document
        # naming a code; without one (botocore then uses the status) it is something else.
        # A bare 401/403 still reads best as a refusal (gateways drop error bodies), a
        # bare 5xx as a proxy or balancer in trouble.
        documented = bool(code) and not code.isdigit()
        refused = status in (401, 403) or transient_reply(status, code)
        if not documented and not operation.startswith("Head") and not refused:
            return self.not_s3(f"{status} {error.get('Message') or ''} to {operation}".strip())
        if code == "NoSuchBucket" or (key is None and status == 404):
            return self.missing_bucket()
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
            return _permanent(
                StorageConnectionError(
                    f"Failed to connect to S3 bucket '{self.bucket}': the bucket is in another "
                    f"region than '{self.region}' (check the region)"
                )
            )
        if not_implemented(exc):
            return StorageError(
                f"S3 at {self.where} does not implement {operation} (501 NotImplemented)"
            )
        message = error.get("Message") or "no details"
        storage_error = StorageError(
            f"S3 request to bucket '{self.bucket}'{on_key} failed: {code or status}: {message}"
        )
        storage_error.transient = transient_reply(status, code)
        return storage_error
