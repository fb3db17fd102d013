"""Which config a CLI command works on (a file, or a config the server knows), its storage
and key, and how an interrupted command ends: shared by every command that reads backups."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from backapp.cli.output import err_console
from backapp.cli.signals import EXIT_INTERRUPTED
from backapp.domain.config import BackupConfig, load_config_file
from backapp.engine.format.crypto import MasterKey
from backapp.engine.format.layout import Repository, newest_per_folder
from backapp.engine.progress import CancelToken
from backapp.errors import CancelledError, EncryptionKeyError, UsageError
from backapp.settings import Settings
from backapp.storage import Storage
from backapp.storage.factory import open_storage

if TYPE_CHECKING:  # the database and services: imported by the commands that use them
    from backapp.services.context import AppContext
    from backapp.services.identity import StoredConfig

ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config-file",
        "-c",
        help="JSON backup configuration (the API's schema; a config exported from the API "
        "keeps its folder).",
        show_default=False,
    ),
]
ConfigRef = Annotated[
    str | None,
    typer.Option(
        "--config",
        help="Name or id of a config the server knows (its database: DATABASE_URL).",
        show_default=False,
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]


def master_key(settings: Settings, *, required: bool) -> MasterKey | None:
    """Given settings, return the encryption key, or None if unset and not required."""
    secret = settings.backup_encryption_key
    return MasterKey.configured(secret.get_secret_value() if secret else None, required=required)


def open_config_storage(
    config: BackupConfig, settings: Settings, cancel: CancelToken, *, upload: bool = False
) -> Storage:
    """Given a config, return its destination storage: retries, the config's download limit,
    its upload limit if ``upload``, and stopping within seconds of a cancel."""
    return open_storage(
        config.destination,
        default_endpoint=settings.aws_s3_endpoint,
        upload_kbps=config.options.bandwidth if upload else None,
        download_kbps=config.options.download_bandwidth,
        sleep=cancel.wait,
        cancelled=lambda: cancel.cancelled,
    )


@dataclass(frozen=True)
class Chosen:
    """The config a command works on: its identity, and the server's context if the server
    knows it (``--config``), for what a server run also does (retention marks its runs)."""

    identity: StoredConfig
    ctx: AppContext | None = None

    @property
    def document(self) -> BackupConfig:
        """The config's document."""
        return self.identity.document


def choose_config(
    config_file: Path | None, config_ref: str | None, settings: Settings, cancel: CancelToken
) -> Chosen:
    """Given the command's --config-file or --config, return the config and its identity.
    Raise UsageError (neither or both), ConfigError, NotFoundError, DatabaseError,
    StorageError (a file without a folder name: the destination is looked at)."""
    if (config_file is None) == (config_ref is None):
        raise UsageError("give either --config-file FILE or --config NAME|ID")
    if config_ref is not None:
        from backapp.db import Database
        from backapp.services import configs as config_service
        from backapp.services.context import AppContext

        ctx = AppContext(settings=settings, db=Database(settings.database_url))
        ctx.db.upgrade()  # as every server process does on start (a no-op when current)
        with ctx.db.session() as session:
            identity = config_service.identity_of(config_service.find(session, config_ref))
        return Chosen(identity, ctx)
    assert config_file is not None
    file = load_config_file(config_file)
    storage = open_config_storage(file.document, settings, cancel)
    prefix = file.document.destination.prefix
    from backapp.services.identity import identity_of_file

    return Chosen(identity_of_file(file, lambda: newest_per_folder(storage, prefix)))


def repository_for(identity: StoredConfig, settings: Settings, cancel: CancelToken) -> Repository:
    """Given a config's identity, return the repository of its backups (for reading)."""
    config = identity.document
    try:
        master = master_key(settings, required=False)
    except EncryptionKeyError:
        master = None  # a malformed key: encrypted backups list as needing the key
    return Repository(
        open_config_storage(config, settings, cancel),
        config.destination.prefix,
        identity.slug,
        master,
    )


def interrupted(exc: CancelledError, as_json: bool) -> NoReturn:
    """Given the cancel of an interrupted command, say it stopped and cleaned up; exit 130."""
    message = f"{exc.message}: stopped and cleaned up"
    if as_json:
        print(json.dumps({"status": "cancelled", "error": message}))
    else:
        err_console.print(f"[bold yellow]{message}[/]")
    raise typer.Exit(EXIT_INTERRUPTED)
