"""open_storage turns a destination into a ready, wrapped Storage."""

from __future__ import annotations

from pathlib import Path

from backapp.domain.config import LocalDestination, S3Destination
from backapp.storage import (
    LocalStorage,
    RetryingStorage,
    ThrottledStorage,
    open_storage,
)
from backapp.storage.s3 import S3Storage


def test_local_destination_opens_a_retrying_local_storage_without_its_prefix(
    tmp_path: Path,
) -> None:
    destination = LocalDestination(type="local", path=str(tmp_path), prefix="team")

    storage = open_storage(destination)
    storage.put_bytes("cfg/backup.json", b"{}")

    assert isinstance(storage, RetryingStorage)
    assert isinstance(storage.inner, LocalStorage)
    assert storage.description == str(tmp_path)
    assert (tmp_path / "cfg" / "backup.json").read_bytes() == b"{}"  # the engine adds prefixes


def test_bandwidth_limits_wrap_the_storage_in_throttles_of_that_many_kib(
    tmp_path: Path,
) -> None:
    destination = LocalDestination(type="local", path=str(tmp_path))

    storage = open_storage(destination, upload_kbps=512, download_kbps=128)

    assert isinstance(storage, ThrottledStorage)
    assert storage.upload is not None and storage.upload.rate == 512 * 1024
    assert storage.download is not None and storage.download.rate == 128 * 1024
    assert isinstance(storage.inner, RetryingStorage)
    reading = open_storage(destination, download_kbps=128)
    assert isinstance(reading, ThrottledStorage) and reading.upload is None


def test_destination_endpoint_wins_over_the_default_endpoint() -> None:
    own = S3Destination(bucket="backups", region="eu-west-1", endpoint="https://own.example")
    plain = S3Destination(bucket="backups", region="eu-west-1")

    chosen = open_storage(own, default_endpoint="https://default.example")
    fallback = open_storage(plain, default_endpoint="https://default.example")
    aws = open_storage(plain)

    assert chosen.description == "s3://backups at https://own.example"
    assert fallback.description == "s3://backups at https://default.example"
    assert aws.description == "s3://backups"


def test_s3_destination_on_the_default_endpoint_is_usable(
    s3_bucket: str, moto_endpoint: str
) -> None:
    destination = S3Destination(bucket=s3_bucket, region="us-east-1")

    storage = open_storage(destination, default_endpoint=moto_endpoint)
    storage.check()
    storage.put_bytes("cfg/backup.json", b"{}")

    assert isinstance(storage, RetryingStorage)
    assert isinstance(storage.inner, S3Storage)
    assert storage.get_bytes("cfg/backup.json") == b"{}"
