"""What real S3-compatible servers differ in: addressing style, an endpoint URL with a path,
a plain web server where S3 was expected, and a server without ListMultipartUploads (501).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from mypy_boto3_s3 import S3Client
from pydantic import ValidationError

from backapp.domain.config import S3Destination, validation_problems
from backapp.engine.format.layout import Repository
from backapp.errors import StorageConnectionError
from backapp.storage import Storage, open_storage
from backapp.storage.s3 import S3Storage
from tests.helpers.proxy import HttpFaultProxy, Request


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[HttpFaultProxy]:
    running = HttpFaultProxy(int(moto_endpoint.rsplit(":", 1)[1])).start()
    yield running
    running.stop()


def backend(storage: Storage) -> S3Storage:
    inner = getattr(storage, "inner", storage)
    assert isinstance(inner, S3Storage)
    return inner


def object_url(storage: Storage) -> str:
    client = backend(storage)._client()
    return client.generate_presigned_url("get_object", Params={"Bucket": "backups", "Key": "k"})


# -- addressing style -----------------------------------------------------------------


def test_addressing_style_defaults_to_path_for_an_endpoint_and_auto_for_aws(
    credentials: None,
) -> None:
    custom = S3Destination(bucket="backups", region="eu-west-1", endpoint="http://s3.example.test")
    aws = S3Destination(bucket="backups", region="eu-west-1")

    assert object_url(open_storage(custom)).startswith("http://s3.example.test/backups/k?")
    assert object_url(open_storage(aws)).startswith("https://backups.s3.")


@pytest.mark.parametrize(
    ("style", "url"),
    [
        ("virtual", "http://backups.s3.example.test/k?"),
        ("path", "http://s3.example.test/backups/k?"),
        ("auto", "http://s3.example.test/backups/k?"),  # botocore: path off AWS
    ],
)
def test_addressing_style_of_the_destination_reaches_botocore(
    credentials: None, style: str, url: str
) -> None:
    destination = S3Destination.model_validate(
        {
            "type": "s3",
            "bucket": "backups",
            "region": "eu-west-1",
            "endpoint": "http://s3.example.test",
            "addressingStyle": style,
        }
    )
    assert destination.addressing_style == style

    assert object_url(open_storage(destination)).startswith(url)
    assert destination.to_json_dict()["addressingStyle"] == style


def test_an_unknown_addressing_style_is_refused_with_the_field() -> None:
    with pytest.raises(ValidationError) as failure:
        S3Destination.model_validate(
            {"type": "s3", "bucket": "backups", "region": "eu-west-1", "addressingStyle": "dns"}
        )
    [(field, message)] = validation_problems(failure.value)
    assert field == "addressingStyle"
    assert "'auto', 'path' or 'virtual'" in message


def test_a_destination_without_addressing_style_keeps_its_document() -> None:
    destination = S3Destination(bucket="backups", region="eu-west-1")
    assert "addressingStyle" not in destination.to_json_dict()


# -- endpoints that are not what they seem --------------------------------------------


def test_an_endpoint_url_with_a_path_is_named_as_the_problem(
    s3_bucket: str, proxy: HttpFaultProxy
) -> None:
    endpoint = f"{proxy.url}/minio/"
    storage = open_storage(S3Destination(bucket=s3_bucket, region="us-east-1", endpoint=endpoint))

    for operation in (
        storage.check,
        lambda: storage.put_bytes("k", b"x"),
        lambda: list(storage.list("cfg/")),
    ):
        with pytest.raises(StorageConnectionError) as failure:
            operation()
        message = str(failure.value)
        assert "the endpoint URL has a path ('/minio')" in message, message
        assert f"use {proxy.url}" in message
        assert "does not exist" not in message
        assert not failure.value.transient
    assert len(proxy.seen) == 3  # each tried once: waiting will not move the server


class _Html200(BaseHTTPRequestHandler):
    """A web application: a welcome page, 200, whatever is asked."""

    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b"<!DOCTYPE html><html><body><h1>Welcome</h1></body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(params=["files", "welcome page"])
def web_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A plain HTTP server on 127.0.0.1: python's file server on an empty folder (404 HTML
    to GET, 501 HTML to PUT), or one answering a 200 HTML page to everything."""
    if request.param == "files":
        handler: type[BaseHTTPRequestHandler] = partial(  # type: ignore[assignment]
            _Quiet, directory=str(tmp_path)
        )
    else:
        handler = _Html200
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_web_server_that_is_not_s3_is_named_so(web_server: str, credentials: None) -> None:
    storage = open_storage(S3Destination(bucket="backups", region="us-east-1", endpoint=web_server))

    with pytest.raises(StorageConnectionError) as failure:
        storage.check()

    message = str(failure.value)
    assert message.startswith(f"The endpoint {web_server} does not answer as an S3 server ("), (
        message
    )
    assert message.endswith("): check the endpoint URL")
    assert "does not exist" not in message
    assert not failure.value.transient
    with pytest.raises(StorageConnectionError, match="does not answer as an S3 server"):
        list(storage.list("cfg/"))


# -- a server without ListMultipartUploads ----------------------------------------------


def lists_uploads(request: Request) -> bool:
    return request.method == "GET" and "uploads" in parse_qs(request.query, True)


def test_a_store_that_cannot_list_unfinished_uploads_is_said_once_and_not_retried(
    s3_bucket: str, proxy: HttpFaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    rule = proxy.add(lists_uploads, "status", status=501, code="NotImplemented")
    storage = open_storage(S3Destination(bucket=s3_bucket, region="us-east-1", endpoint=proxy.url))

    with caplog.at_level(logging.WARNING):
        assert storage.abort_incomplete("cfg/") == 0
        assert storage.abort_incomplete("cfg/") == 0

    assert rule.hits == 1  # permanent: not retried, and not asked again
    said = [r.getMessage() for r in caplog.records if "unfinished uploads" in r.getMessage()]
    assert len(said) == 1 and "501 NotImplemented" in said[0]


def test_deleting_a_backup_on_a_store_without_upload_listing_completes(
    s3_bucket: str, s3_client: S3Client, proxy: HttpFaultProxy
) -> None:
    backup_id = "20240101T000000Z-0001"
    for name in ("backup.json", "manifest", "data.tar"):
        s3_client.put_object(Bucket=s3_bucket, Key=f"cfg/{backup_id}/{name}", Body=b"x")
    proxy.add(lists_uploads, "status", status=501, code="NotImplemented")
    storage = open_storage(S3Destination(bucket=s3_bucket, region="us-east-1", endpoint=proxy.url))

    removed = Repository(storage, "", "cfg").delete(backup_id)

    assert removed == 3
    assert s3_client.list_objects_v2(Bucket=s3_bucket).get("KeyCount") == 0
