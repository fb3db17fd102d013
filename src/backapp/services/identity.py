"""Who a config is, without the database: ``StoredConfig`` and a config file's identity
(the CLI's --config-file commands import only this)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from backapp.domain.config import BackupConfig, ConfigFile, slugify
from backapp.engine.format.layout import BackupInfo
from backapp.errors import ConfigError


@dataclass(frozen=True)
class StoredConfig:
    """Who a config is: its id (None for a config file the server does not know), the
    folder of its backups (fixed when it was first stored: a rename keeps it) and its
    document. API, pages, worker and CLI all find a config's backups through this."""

    id: str | None
    slug: str
    document: BackupConfig


def identity_of_file(
    file: ConfigFile, folders: Callable[[], Mapping[str, BackupInfo | None]]
) -> StoredConfig:
    """Given a config file and a way to list the destination's config folders (each with
    its newest backup), return the file's identity. Raise ConfigError.

    A file exported from the API keeps the server's folder (its ``slug``). A file without
    one gets the folder a new config of its name would get, unless that would silently
    fork: the folder holds another config's backups (another name with the same folder
    name), or it holds none while another folder has backups of the same sources (the
    config was renamed). Both are reported with the ``slug`` to add to the file.
    """
    document = file.document
    if file.slug is not None:
        return StoredConfig(file.config_id, file.slug, document)
    slug = slugify(document.name)
    found = folders()
    if slug in found:
        newest = found[slug]
        if newest is not None and newest.config_name != document.name:
            raise ConfigError(
                f"folder '{slug}' of the destination holds the backups of another config "
                f'(\'{newest.config_name}\'); add "slug": "{slug}" to the file to back up '
                "into it anyway, or give this config another name",
                [("slug", "the folder of another config")],
            )
        return StoredConfig(file.config_id, slug, document)
    sources = sorted(s.path for s in document.sources)
    same = [f for f, info in found.items() if info is not None and sorted(info.sources) == sources]
    if same:
        where = ", ".join(
            f"'{f}' ('{info.config_name}')" for f in same if (info := found[f]) is not None
        )
        raise ConfigError(
            f"this config has no folder '{slug}' in the destination, but backups of the same "
            f'sources are in {where}: it was renamed? Add "slug": "{same[0]}" to the '
            f'file to go on with those backups, or "slug": "{slug}" to start anew',
            [("slug", "missing: the config's backups are in another folder")],
        )
    return StoredConfig(file.config_id, slug, document)
