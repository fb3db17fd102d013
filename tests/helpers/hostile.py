"""Hand-made hostile and damaged backups: a real backup, then its manifest or its
``backup.json`` rewritten as someone with write access to the storage could."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backapp.engine.layout import Repository

Doc = dict[str, Any]


def object_path(repo: Repository, backup_id: str, name: str) -> Path:
    """Given a backup in a local repository and an object name, return its file."""
    return Path(repo.storage.description) / repo.key(backup_id, name)


def read_manifest(repo: Repository, backup_id: str) -> tuple[Doc, list[Doc], Doc]:
    """Given an unencrypted backup, return its manifest: header, entries, trailer."""
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
    object_path(repo, backup_id, "manifest.json.gz").write_bytes(gzip.compress(body))


def rewrite_marker(repo: Repository, backup_id: str, edit: Callable[[Doc], Doc]) -> None:
    """Given a backup, rewrite its backup.json through ``edit``."""
    path = object_path(repo, backup_id, "backup.json")
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))


def first_file(entries: list[Doc]) -> Doc:
    """Given manifest entries, return the first regular file's."""
    return next(e for e in entries if e["type"] == "file")


def first_dir(entries: list[Doc]) -> Doc:
    """Given manifest entries, return the first folder's."""
    return next(e for e in entries if e["type"] == "dir")
