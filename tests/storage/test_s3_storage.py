"""What is particular to S3Storage: part sizes, multipart shape, bounded memory."""

from __future__ import annotations

import os
import tracemalloc

import pytest
from mypy_boto3_s3 import S3Client

from backapp.storage.s3 import MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE, S3Storage, part_size_for

MIB = 1024 * 1024
GIB = 1024 * MIB


@pytest.mark.parametrize("base", [MIN_PART_SIZE, 8 * MIB])
def test_part_sizes_grow_so_that_ten_thousand_parts_hold_over_100_gib(base: int) -> None:
    sizes = [part_size_for(n, base) for n in range(1, MAX_PARTS + 1)]

    assert sizes[0] == base
    assert sizes == sorted(sizes)
    assert max(sizes) <= min(MAX_PART_SIZE, 8 * base)  # buffers stay modest
    assert sum(sizes) > 140 * GIB


def test_part_size_below_the_s3_minimum_is_refused() -> None:
    with pytest.raises(ValueError, match="part_size"):
        S3Storage("bucket", "us-east-1", part_size=MIN_PART_SIZE - 1)


def test_description_names_the_bucket_and_any_custom_endpoint() -> None:
    assert S3Storage("backups", "eu-west-1").description == "s3://backups"
    custom = S3Storage("backups", "us-east-1", "https://minio.example.com:9000")
    assert custom.description == "s3://backups at https://minio.example.com:9000"


def etag(s3_client: S3Client, bucket: str, key: str) -> str:
    return s3_client.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')


def test_large_object_goes_up_in_parts_and_small_one_in_a_single_put(
    s3_client: S3Client, s3_bucket: str, moto_endpoint: str
) -> None:
    storage = S3Storage(s3_bucket, "us-east-1", moto_endpoint, part_size=5 * MIB)

    large = storage.open_writer("large")
    large.write(os.urandom(12 * MIB + 1))
    large.commit()
    small = storage.open_writer("small")
    small.write(os.urandom(MIB))
    small.commit()

    assert etag(s3_client, s3_bucket, "large").endswith("-3")  # a multipart ETag names its parts
    assert "-" not in etag(s3_client, s3_bucket, "small")


def test_writer_memory_stays_flat_as_the_object_grows(s3_bucket: str, moto_endpoint: str) -> None:
    part_size = 5 * MIB
    storage = S3Storage(s3_bucket, "us-east-1", moto_endpoint, part_size=part_size)
    chunk = os.urandom(MIB)
    storage.check()  # builds the client first: botocore's service model is a one-off cost

    tracemalloc.start()
    try:
        writer = storage.open_writer("big")
        for _ in range(60):
            writer.write(chunk)
        writer.commit()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # Two parts in flight and one filling, plus change: far below the 60 MiB written.
    assert peak < 3.5 * part_size
    assert storage.head("big") is not None
