"""What every service needs from its process: settings, the database, keys, storage."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from backapp.db import Database
from backapp.domain.config import BackupConfig, LocalDestination, S3Destination
from backapp.engine.format.crypto import MasterKey
from backapp.engine.format.layout import Repository
from backapp.engine.progress import CancelToken
from backapp.errors import EncryptionKeyError
from backapp.services.logins import LoginGuard
from backapp.settings import Settings
from backapp.storage import Storage
from backapp.storage.factory import open_storage


@dataclass
class AppContext:
    """The composition root's wiring, handed to services and workers."""

    settings: Settings
    db: Database
    logins: LoginGuard = field(default_factory=LoginGuard)

    def master_key(self, *, required: bool) -> MasterKey | None:
        """Return the encryption key (None if unset and not required). Raise EncryptionKeyError."""
        secret = self.settings.backup_encryption_key
        return MasterKey.configured(
            secret.get_secret_value() if secret else None, required=required
        )

    def storage_for(
        self,
        destination: S3Destination | LocalDestination,
        *,
        upload_kbps: int | None = None,
        download_kbps: int | None = None,
        retry: bool = True,
        cancel: CancelToken | None = None,
    ) -> Storage:
        """Given a destination, return its storage (with retries and bandwidth limits).

        With a cancel token, waiting (for storage or for bandwidth) ends within seconds of
        a cancel.
        """
        return open_storage(
            destination,
            default_endpoint=self.settings.aws_s3_endpoint,
            upload_kbps=upload_kbps,
            download_kbps=download_kbps,
            retry=retry,
            sleep=cancel.wait if cancel is not None else time.sleep,
            cancelled=(lambda: cancel.cancelled) if cancel is not None else None,
        )

    def repository(
        self, config: BackupConfig, slug: str, cancel: CancelToken | None = None
    ) -> Repository:
        """Given a config and its stored slug, return the repository of its backups for
        reading and deleting (downloads at the config's download limit, if any)."""
        try:
            master = self.master_key(required=False)
        except EncryptionKeyError:
            master = None  # a malformed key: encrypted backups list as needing the key
        return Repository(
            self.storage_for(
                config.destination,
                download_kbps=config.options.download_bandwidth,
                cancel=cancel,
            ),
            config.destination.prefix,
            slug,
            master,
        )
