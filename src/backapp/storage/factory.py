"""Build the Storage a destination describes, wrapped for retries and a bandwidth limit."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backapp.domain.config import LocalDestination, S3Destination
from backapp.storage.base import Storage
from backapp.storage.local import LocalStorage
from backapp.storage.wrappers import (
    CancellableStorage,
    RetryingStorage,
    ThrottledStorage,
    TokenBucket,
)


def open_storage(
    destination: S3Destination | LocalDestination,
    *,
    default_endpoint: str | None = None,
    upload_kbps: int | None = None,
    download_kbps: int | None = None,
    retry: bool = True,
    sleep: Callable[[float], Any] = time.sleep,
    cancelled: Callable[[], bool] | None = None,
) -> Storage:
    """Given a destination, return its Storage with retries, upload and download limits
    (KB/s) if given, and stopping soon after ``cancelled()`` turns true if given.

    ``default_endpoint`` (the AWS_S3_ENDPOINT setting) serves S3 destinations without an
    endpoint of their own. The destination's prefix is not applied here: callers join it
    into their keys. Nothing is contacted yet; call ``check()`` for that. Without
    ``retry`` (an interactive check) a failure is reported at once. ``sleep`` is how the
    limits wait: a run passes its cancel token's wait, so a cancelled run does not sleep on.
    """
    upload = TokenBucket(upload_kbps * 1024, sleep=sleep) if upload_kbps else None
    download = TokenBucket(download_kbps * 1024, sleep=sleep) if download_kbps else None
    backend: Storage
    if isinstance(destination, LocalDestination):
        backend = LocalStorage(Path(destination.path))
    else:
        from backapp.storage.s3 import S3Storage  # boto3 only when S3 is used
        from backapp.storage.s3.retry import ONCE, PATIENT

        endpoint = destination.endpoint or default_endpoint or None
        backend = S3Storage(
            destination.bucket,
            destination.region,
            endpoint,
            # Each request is retried inside S3Storage (at most 3 tries; an endpoint that
            # stops answering is waited out for about a minute): see storage/s3/retry.py.
            retry=PATIENT if retry else ONCE,
            upload_limit=upload,  # paced as the bytes are sent, not as parts are filled
            addressing_style=destination.addressing_style,
            sleep=sleep,
            cancelled=cancelled,
        )
        upload = None
    # Resumes broken streams; retries nothing the backend has retried (S3's requests).
    storage: Storage = RetryingStorage(backend) if retry else backend
    if upload is not None or download is not None:
        storage = ThrottledStorage(storage, upload, download)
    if cancelled is not None:
        storage = CancellableStorage(storage, cancelled)
    return storage
