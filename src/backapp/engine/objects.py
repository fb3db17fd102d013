"""Whole-object reads and writes, with the optional encryption layer."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from backapp.engine.format.crypto import MasterKey, decrypt_stream, encrypt_stream
from backapp.errors import EncryptionKeyError
from backapp.storage import ObjectInfo, Storage, TransferCallback


def write_object(
    storage: Storage,
    key: str,
    chunks: Iterable[bytes],
    master: MasterKey | None,
    on_transfer: TransferCallback | None = None,
) -> ObjectInfo:
    """Given plaintext chunks, store them under key (encrypted when a key is given).

    The upload is aborted if anything fails. Raise StorageError.
    """
    writer = storage.open_writer(key, on_transfer=on_transfer)
    try:
        for chunk in encrypt_stream(chunks, master) if master else chunks:
            writer.write(chunk)
        return writer.commit()
    except BaseException:
        writer.abort()
        raise


def read_object(
    storage: Storage,
    key: str,
    master: MasterKey | None,
    *,
    encrypted: bool,
    name: str | None = None,
) -> Iterator[bytes]:
    """Given a key and whether the object is encrypted, yield its plaintext.

    Raise ObjectNotFoundError, EncryptionKeyError (encrypted but no key), IntegrityError.
    """
    label = name or key.rsplit("/", 1)[-1]
    if encrypted and master is None:
        raise EncryptionKeyError(
            f"{label} is encrypted: set BACKUP_ENCRYPTION_KEY to the key it was made with"
        )
    chunks = storage.get(key)
    if encrypted:
        assert master is not None
        yield from decrypt_stream(chunks, master, label)
    else:
        yield from chunks
