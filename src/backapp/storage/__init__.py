"""Storage backends: one small protocol, a local folder and S3, plus wrappers.

``S3Storage`` lives in ``backapp.storage.s3`` and is imported only when an S3
destination is used: boto3 costs a tenth of a second to import.
"""

from backapp.storage.base import ObjectInfo, ObjectWriter, Storage, TransferCallback, join_key
from backapp.storage.factory import open_storage
from backapp.storage.local import LocalStorage
from backapp.storage.wrappers import RetryingStorage, ThrottledStorage, TokenBucket

__all__ = [
    "LocalStorage",
    "ObjectInfo",
    "ObjectWriter",
    "RetryingStorage",
    "Storage",
    "ThrottledStorage",
    "TokenBucket",
    "TransferCallback",
    "join_key",
    "open_storage",
]
