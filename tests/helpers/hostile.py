"""Hand-made hostile and damaged backups: a real backup, then its manifest or its
``backup.json`` rewritten as someone with write access to the storage could."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backapp.engine.backup.parent import spool_manifest
from backapp.engine.blockstore import BlockWriter, load_index
from backapp.engine.compress import Codec
from backapp.engine.format.layout import Repository
from backapp.engine.format.marker import marker_bytes

Doc = dict[str, Any]


def format_of(repo: Repository, backup_id: str) -> int:
    """Given a backup in a local repository, return its storage format."""
    doc = json.loads(object_path(repo, backup_id, "backup.json").read_text())
    return int(doc["formatVersion"])


def object_path(repo: Repository, backup_id: str, name: str) -> Path:
    """Given a backup in a local repository and an object name, return its file."""
    return Path(repo.storage.description) / repo.key(backup_id, name)


def read_manifest(repo: Repository, backup_id: str) -> tuple[Doc, list[Doc], Doc]:
    """Given an unencrypted backup (or format 2, with the repository's key), return its
    manifest: header, entries, trailer."""
    if format_of(repo, backup_id) >= 2:
        info = repo.load(backup_id)
        index, _ = load_index(repo)
        with index, spool_manifest(repo, info, repo.master, index) as spool:
            raw = spool.read()
    else:
        raw = object_path(repo, backup_id, "manifest.json.gz").read_bytes()
    lines = [json.loads(line) for line in gzip.decompress(raw).splitlines()]
    return lines[0], lines[1:-1], lines[-1]


def rewrite_manifest(
    repo: Repository, backup_id: str, edit: Callable[[list[Doc]], list[Doc]], *, order: bool = True
) -> None:
    """Given an unencrypted backup, rewrite its manifest's entries through ``edit`` (sorted
    into archive order afterwards unless ``order`` is False), keeping the count right."""
    header, entries, trailer = read_manifest(repo, backup_id)
    entries = edit(entries)
    if order:
        entries.sort(
            key=lambda e: tuple(e["path"].split("/")) if isinstance(e["path"], str) else ()
        )
    out = [header, *entries, {**trailer, "entries": len(entries)}]
    body = b"".join(json.dumps(d).encode() + b"\n" for d in out)
    if format_of(repo, backup_id) >= 2:
        store_manifest(repo, backup_id, gzip.compress(body))
        return
    object_path(repo, backup_id, "manifest.json.gz").write_bytes(gzip.compress(body))


def store_manifest(repo: Repository, backup_id: str, raw: bytes) -> None:
    """Given a format-2 backup and the bytes of a manifest (gzip'd lines), store them as
    blocks and point the backup's marker at them (as a writer with the key could; without
    a key, only unencrypted backups)."""
    writer = BlockWriter(repo, Codec("none", None), run=backup_id, workers=1)
    try:
        refs = [
            writer.put(raw[i : i + (1 << 20)], "none", meta=True)
            for i in range(0, len(raw), 1 << 20)
        ]
        writer.finish()
        writer.committed()
    finally:
        writer.close()
    info = repo.load(backup_id).model_copy(update={"manifest_blocks": refs})
    object_path(repo, backup_id, "backup.json").write_bytes(repo.marker(info))


def rewrite_marker(repo: Repository, backup_id: str, edit: Callable[[Doc], Doc]) -> None:
    """Given a backup, rewrite its backup.json through ``edit`` (format 2, unencrypted: its
    description, with a matching check, as anyone with write access can)."""
    path = object_path(repo, backup_id, "backup.json")
    doc = json.loads(path.read_text())
    if doc.get("formatVersion") == 2 and "info" in doc:
        path.write_bytes(marker_bytes(repo.keys, backup_id, edit(doc["info"])))
        return
    path.write_text(json.dumps(edit(doc)))


def first_file(entries: list[Doc]) -> Doc:
    """Given manifest entries, return the first regular file's."""
    return next(e for e in entries if e["type"] == "file")


def first_dir(entries: list[Doc]) -> Doc:
    """Given manifest entries, return the first folder's."""
    return next(e for e in entries if e["type"] == "dir")


def pack_of(repo: Repository, block_id: str) -> tuple[Path, int, int]:
    """Given a format-2 block of a local repository, return its pack's file and the
    block's offset and length there."""
    from backapp.engine.format.packs import pack_key

    index, _ = load_index(repo)
    with index:
        loc = index.get(block_id)
    assert loc is not None, f"block {block_id} is in no pack"
    return Path(repo.storage.description) / pack_key(repo.base, loc.pack), loc.offset, loc.length


def file_entry(repo: Repository, backup_id: str, path_end: str) -> Doc:
    """Given a backup and the end of a file's path, return its manifest entry."""
    _, entries, _ = read_manifest(repo, backup_id)
    return next(e for e in entries if e["type"] == "file" and e["path"].endswith(path_end))


def redate_marker(marker: Path, **fields: str) -> None:
    """Given a backup.json in a local store (``{slug}/{backup-id}/backup.json``) and
    camelCase fields (``completedAt=…``), rewrite them as the backup's maker could: format
    1 as plain JSON, format 2 (unencrypted) with its check recomputed."""
    doc = json.loads(marker.read_text())
    if doc.get("formatVersion") != 2:
        marker.write_text(json.dumps({**doc, **fields}))
        return
    from backapp.engine.format.keys import FolderKeys

    info = {**doc["info"], **fields}
    backup_id, slug = marker.parent.name, marker.parent.parent.name
    marker.write_bytes(marker_bytes(FolderKeys(slug), backup_id, info))
