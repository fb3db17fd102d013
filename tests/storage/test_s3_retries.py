"""Each S3 request is tried a bounded, documented number of times (storage/s3/retry.py),
counted at a fault proxy in front of moto's S3 server, through the storage a run opens
(open_storage: the retry loop inside S3Storage and RetryingStorage outside): a transient
answer 3 times, a permanent one once, an endpoint that stops answering 9 times, a broken
download body 4 times; nothing multiplies.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from urllib.parse import parse_qs

import pytest
from mypy_boto3_s3 import S3Client

from backapp.domain.config import S3Destination
from backapp.errors import StorageError
from backapp.storage import Storage, open_storage
from backapp.storage.s3.retry import PATIENT, STANDARD
from backapp.storage.wrappers import RetryingStorage
from tests.helpers.proxy import HttpFaultProxy, Request

MIB = 1024 * 1024
Match = Callable[[Request], bool]


def query(request: Request) -> dict[str, list[str]]:
    return parse_qs(request.query, keep_blank_values=True)


class Sleeps:
    """A sleep that records its waits and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[HttpFaultProxy]:
    running = HttpFaultProxy(int(moto_endpoint.rsplit(":", 1)[1])).start()
    yield running
    running.stop()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def storage(s3_bucket: str, proxy: HttpFaultProxy, sleeps: Sleeps) -> Storage:
    destination = S3Destination(bucket=s3_bucket, region="us-east-1", endpoint=proxy.url)
    return open_storage(destination, sleep=sleeps)


def write_two_parts(storage: Storage) -> None:
    writer = storage.open_writer("cfg/id/data")
    writer.write(os.urandom(8 * MIB + 1))  # part 1 goes up now, part 2 at commit
    writer.commit()


# Each operation: how to call it, and which of its requests the proxy answers.
OPERATIONS: dict[str, tuple[Callable[[Storage], object], Match]] = {
    "put": (
        lambda s: s.put_bytes("cfg/backup.json", b"{}"),
        lambda r: r.method == "PUT" and r.path.endswith("/cfg/backup.json"),
    ),
    "get": (
        lambda s: s.get_bytes("cfg/present"),
        lambda r: r.method == "GET" and r.path.endswith("/cfg/present"),
    ),
    "head": (
        lambda s: s.head("cfg/present"),
        lambda r: r.method == "HEAD" and r.path.endswith("/cfg/present"),
    ),
    "list": (
        lambda s: list(s.list("cfg/")),
        lambda r: r.method == "GET" and "list-type" in query(r),
    ),
    "delete": (
        lambda s: s.delete("cfg/present"),
        lambda r: r.method == "DELETE" and r.path.endswith("/cfg/present"),
    ),
    "create multipart upload": (
        write_two_parts,
        lambda r: r.method == "POST" and "uploads" in query(r),
    ),
    "a multipart part": (
        write_two_parts,
        lambda r: r.method == "PUT" and query(r).get("partNumber") == ["1"],
    ),
    "complete multipart upload": (
        write_two_parts,
        lambda r: r.method == "POST" and "uploadId" in query(r),
    ),
}
TRANSIENT = [(503, "SlowDown"), (500, "InternalError")]
PERMANENT = [(403, "AccessDenied"), (404, "NoSuchKey"), (501, "NotImplemented")]


@pytest.mark.parametrize(("status", "code"), TRANSIENT + PERMANENT)
@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_a_failing_request_is_tried_three_times_if_transient_and_once_if_permanent(
    storage: Storage,
    s3_client: S3Client,
    s3_bucket: str,
    proxy: HttpFaultProxy,
    sleeps: Sleeps,
    operation: str,
    status: int,
    code: str,
) -> None:
    s3_client.put_object(Bucket=s3_bucket, Key="cfg/present", Body=b"here")
    call, match = OPERATIONS[operation]
    rule = proxy.add(match, "status", status=status, code=code)

    # Most fail; a HEAD answered 404 is "not there", a failed complete is checked by HEAD.
    with contextlib.suppress(StorageError):
        call(storage)

    transient = (status, code) in TRANSIENT
    assert rule.hits == (STANDARD.tries if transient else 1)
    assert proxy.count(match) == rule.hits  # nothing went round the proxy's answer
    assert sleeps.waits == (list(STANDARD.waits) if transient else [])


def test_the_documented_counts_are_three_tries_and_nine_in_an_outage() -> None:
    assert STANDARD.tries == 3 and STANDARD.waits == (0.5, 1.0)
    assert PATIENT.tries == 3
    assert PATIENT.outage_tries == 9 and sum(PATIENT.outage_waits) == 55


def test_an_endpoint_that_stops_answering_is_tried_nine_times_over_a_minute(
    storage: Storage, proxy: HttpFaultProxy, sleeps: Sleeps
) -> None:
    storage.put_bytes("cfg/a", b"a")  # the endpoint has answered
    rule = proxy.add(lambda r: r.method == "PUT", "reset_before")

    with pytest.raises(StorageError, match="closed by the server"):
        storage.put_bytes("cfg/b", b"b")

    assert rule.hits == PATIENT.outage_tries
    assert sleeps.waits == list(PATIENT.outage_waits)


def test_an_endpoint_never_reached_is_not_waited_out(
    s3_bucket: str, proxy: HttpFaultProxy, sleeps: Sleeps
) -> None:
    destination = S3Destination(bucket=s3_bucket, region="us-east-1", endpoint=proxy.url)
    storage = open_storage(destination, sleep=sleeps)
    rule = proxy.add(lambda r: True, "reset_before")

    with pytest.raises(StorageError):
        storage.put_bytes("cfg/b", b"b")

    assert rule.hits == STANDARD.tries


def test_a_download_whose_body_keeps_breaking_is_read_four_times(
    storage: Storage, s3_client: S3Client, s3_bucket: str, proxy: HttpFaultProxy
) -> None:
    s3_client.put_object(Bucket=s3_bucket, Key="cfg/data", Body=os.urandom(2 * MIB))
    assert isinstance(storage, RetryingStorage)
    reads: Match = lambda r: r.method == "GET" and r.path.endswith("/cfg/data")  # noqa: E731
    rule = proxy.add(reads, "cut_body", fraction=0.0)  # the reply's head, then nothing

    with pytest.raises(StorageError, match="Lost the connection"):
        b"".join(storage.get("cfg/data"))

    # Each read is one request (answered); progress on a read would earn a fresh count.
    assert rule.hits == storage.attempts == 4
    assert proxy.count(reads) == 4
