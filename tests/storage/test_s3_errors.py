"""S3 failures reach the user as StorageErrors with messages they can act on.

Real endpoints where they exist (moto, a closed port); a tiny fake S3 over HTTP
for the answers moto will not give (access denied, a part failing mid-upload).
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from backapp.errors import (
    StorageConnectionError,
    StorageCredentialsError,
    StorageError,
    StoragePermissionError,
)
from backapp.storage.s3 import S3Storage
from backapp.storage.s3.retry import ONCE

MIB = 1024 * 1024
SECRET = "s3cr3t-that-must-never-be-shown"

Answer = tuple[int, dict[str, str], bytes]
Rule = Callable[[str, dict[str, list[str]]], Answer]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def error_xml(code: str) -> bytes:
    return (
        f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
        f"<Message>fake {code}</Message><RequestId>1</RequestId></Error>"
    ).encode()


class FakeS3(ThreadingHTTPServer):
    """An HTTP server that answers S3 requests from ``rule`` and records them."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[str, dict[str, list[str]]]] = []
        self.rule: Rule = lambda method, query: (400, {}, error_xml("NotImplemented"))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeS3
    protocol_version = "HTTP/1.1"  # so botocore's "Expect: 100-continue" is answered at once

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        query = parse_qs(urlsplit(self.path).query, keep_blank_values=True)
        self.server.requests.append((self.command, query))
        status, headers, body = self.server.rule(self.command, query)
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output clean


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFAKEFAKEFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)


@pytest.fixture
def fake_s3(aws_credentials: None) -> Iterator[FakeS3]:
    server = FakeS3()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_unreachable_endpoint_raises_a_plain_connection_error(aws_credentials: None) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    storage = S3Storage("backups", "us-east-1", endpoint, retry=ONCE)

    with pytest.raises(StorageConnectionError) as failure:
        storage.check()

    message = str(failure.value)
    assert message == (
        f"Failed to connect to S3 bucket 'backups' at {endpoint}: Connection refused"
    )
    assert failure.value.transient


def test_missing_bucket_says_the_bucket_does_not_exist(moto_endpoint: str) -> None:
    storage = S3Storage("no-such-bucket-here", "us-east-1", moto_endpoint)
    expected = (
        "Failed to connect to S3 bucket 'no-such-bucket-here': the bucket does not exist "
        "(check the bucket name and region)"
    )

    for operation in (
        storage.check,
        lambda: storage.put_bytes("k", b"x"),
        lambda: list(storage.list("")),
        lambda: storage.get_bytes("k"),
    ):
        with pytest.raises(StorageConnectionError) as failure:
            operation()
        assert str(failure.value) == expected
        assert not failure.value.transient  # retrying will not create the bucket


def test_missing_credentials_raise_a_credentials_error(
    monkeypatch: pytest.MonkeyPatch, moto_endpoint: str
) -> None:
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    storage = S3Storage("backups", "us-east-1", moto_endpoint)

    with pytest.raises(StorageCredentialsError) as failure:
        storage.check()
    assert str(failure.value) == (
        "AWS credentials not configured: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
        "(or use a profile or instance role)"
    )
    with pytest.raises(StorageCredentialsError):
        storage.open_writer("k")


@pytest.mark.parametrize(
    ("status", "code", "error_type", "words"),
    [
        (403, "AccessDenied", StoragePermissionError, "Access denied to S3 bucket 'backups'"),
        (403, "InvalidAccessKeyId", StoragePermissionError, "check AWS_ACCESS_KEY_ID"),
        (403, "SignatureDoesNotMatch", StoragePermissionError, "check AWS_SECRET_ACCESS_KEY"),
        (404, "NoSuchBucket", StorageConnectionError, "the bucket does not exist"),
        (503, "SlowDown", StorageError, "SlowDown"),
    ],
)
def test_s3_error_answers_become_clear_storage_errors(
    fake_s3: FakeS3, status: int, code: str, error_type: type[StorageError], words: str
) -> None:
    fake_s3.rule = lambda method, query: (status, {}, error_xml(code))
    storage = S3Storage("backups", "us-east-1", fake_s3.url, retry=ONCE)

    with pytest.raises(error_type) as failure:
        storage.put_bytes("cfg/backup.json", b"{}")

    assert words in str(failure.value)
    assert SECRET not in str(failure.value)
    assert failure.value.transient == (status >= 500)  # only these may pass if retried


def test_check_reports_a_bucket_that_refuses_access(fake_s3: FakeS3) -> None:
    fake_s3.rule = lambda method, query: (403, {}, b"")
    storage = S3Storage("backups", "us-east-1", fake_s3.url, retry=ONCE)

    with pytest.raises(StoragePermissionError, match="Access denied to S3 bucket 'backups'"):
        storage.check()


def test_upload_that_fails_part_way_aborts_the_multipart_upload(fake_s3: FakeS3) -> None:
    def rule(method: str, query: dict[str, list[str]]) -> Answer:
        if method == "POST" and "uploads" in query:
            return 200, {}, b"<Result><UploadId>U1</UploadId></Result>"
        if method == "PUT" and query.get("partNumber") == ["1"]:
            return 200, {"ETag": '"etag-1"'}, b""
        if method == "PUT":
            return 500, {}, error_xml("InternalError")  # every later part fails
        if method == "DELETE" and query.get("uploadId") == ["U1"]:
            return 204, {}, b""
        return 400, {}, error_xml("Unexpected")

    fake_s3.rule = rule
    storage = S3Storage("backups", "us-east-1", fake_s3.url, part_size=5 * MIB, retry=ONCE)
    writer = storage.open_writer("cfg/id/data")

    with pytest.raises(StorageError, match="InternalError"):
        for _ in range(20):
            writer.write(os.urandom(MIB))
        writer.commit()

    assert fake_s3.requests[-1] == ("DELETE", {"uploadId": ["U1"]})
    assert not any(method == "POST" and "uploadId" in q for method, q in fake_s3.requests)
    with pytest.raises(ValueError, match="already"):
        writer.write(b"more")
    writer.abort()  # a failed writer may still be aborted safely
