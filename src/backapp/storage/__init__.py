"""Storage backends: one small protocol, a local folder and S3, plus wrappers."""

from backapp.storage.base import ObjectInfo, ObjectWriter, Storage, TransferCallback, join_key
from backapp.storage.factory import open_storage
from backapp.storage.local import LocalStorage
from backapp.storage.s3 import S3Storage
from backapp.storage.wrappers import RetryingStorage, ThrottledStorage, TokenBucket

__all__ = [
    "LocalStorage",
    "ObjectInfo",
    "ObjectWriter",
    "RetryingStorage",
    "S3Storage",
    "Storage",
    "ThrottledStorage",
    "TokenBucket",
    "TransferCallback",
    "join_key",
    "open_storage",
]
