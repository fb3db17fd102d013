"""Shared set-up of the format-2 attack and fault tests: a small source tree, its
backups, and the two ways a user finds damage (restore and verify), each reduced to
whether it noticed and what it said."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backapp.domain.config import BackupConfig
from backapp.engine.backup import BackupResult, run_backup
from backapp.engine.format.crypto import MasterKey
from backapp.engine.format.layout import Repository
from backapp.engine.restore import run_restore
from backapp.engine.verify import run_verify
from backapp.errors import IntegrityError
from backapp.storage import Storage
from backapp.storage.local import LocalStorage
from tests.engine.conftest import make_config
from tests.helpers.trees import restored_root, snapshot

Tree = dict[str, tuple[Any, ...]]

SECRET_NAME = "quarterly-plans-7731.txt"  # a file name that must not show in storage
CONFIG_NAME = "Payroll Archive Zebra"  # a config name that must not show either


def make_tree(root: Path, *, seed: int = 0) -> Path:
    """Given a folder, fill it with a small tree (text, random data, a subfolder, two
    files of equal size) and return it."""
    rnd = random.Random(seed)
    (root / "docs" / "deep").mkdir(parents=True, exist_ok=True)
    (root / "docs" / SECRET_NAME).write_text("the plans, in plain words\n" * 50)
    (root / "docs" / "deep" / "notes.md").write_text("# notes\n" + "line\n" * 300)
    (root / "twin-a.bin").write_bytes(rnd.randbytes(40_000))
    (root / "twin-b.bin").write_bytes(rnd.randbytes(40_000))
    (root / "blob.bin").write_bytes(rnd.randbytes(300_000))
    return root


@dataclass
class World:
    """A source tree backed up to a local folder, one config (``slug``) or more."""

    tmp: Path
    key: MasterKey | None
    src: Path
    dest: Path
    storage: LocalStorage
    config: BackupConfig
    slug: str = "engine-test"
    taken: dict[str, Tree] = field(default_factory=dict)  # backup id -> the tree it holds
    restores: int = 0

    @classmethod
    def make(
        cls, tmp: Path, key: MasterKey | None, *, name: str = CONFIG_NAME, **options: Any
    ) -> World:
        """Given a scratch folder and the key (None: not encrypted), return a world with
        a source tree and no backup yet."""
        src = make_tree(tmp / "src")
        dest = tmp / "dest"
        config = make_config([src], dest, encryption=key is not None, **options)
        config = config.model_copy(update={"name": name})
        return cls(tmp, key, src, dest, LocalStorage(dest), config)

    def repo(self, slug: str | None = None, *, key: bool = True) -> Repository:
        """Return the repository of a config folder (default this world's), opened with
        the key unless ``key`` is False."""
        return Repository(self.storage, "", slug or self.slug, self.key if key else None)

    def backup(
        self, slug: str | None = None, storage: Storage | None = None, **kwargs: Any
    ) -> BackupResult:
        """Back up the source now (into ``slug``'s folder); remember what it held."""
        tree = snapshot(self.src)
        result = run_backup(
            self.config, storage or self.storage, slug=slug or self.slug, key=self.key, **kwargs
        )
        self.taken[result.backup_id] = tree
        return result

    def restore_exactly(self, backup_id: str, slug: str | None = None) -> None:
        """Restore a backup into a fresh folder; assert it is the tree it was taken of."""
        self.restores += 1
        target = self.tmp / f"restore-{self.restores}"
        result = run_restore(self.repo(slug), backup_id, target, master=self.key)
        assert result.errors == [], result.errors
        assert snapshot(restored_root(target, self.src)) == self.taken[backup_id]

    def verify_passes(self, backup_id: str, slug: str | None = None) -> None:
        """Assert a full verify of a backup finds nothing wrong."""
        result = run_verify(self.repo(slug), backup_id, master=self.key, full=True)
        assert result.ok, result.summary()
        assert result.warnings == [], result.warnings

    def stored_files(self) -> list[Path]:
        """Return every file in the destination."""
        return sorted(p for p in self.dest.rglob("*") if p.is_file())

    def stored_bytes(self) -> int:
        """Return the bytes the destination holds."""
        return sum(p.stat().st_size for p in self.stored_files())


@dataclass
class Seen:
    """What one way of reading a backup made of it: whether it noticed, what it said."""

    noticed: bool
    text: str


def restore_sees(world: World, backup_id: str, slug: str | None = None) -> Seen:
    """Restore a backup into a fresh folder; return whether it refused or reported errors
    (and every message), or restored exactly what was backed up."""
    world.restores += 1
    target = world.tmp / f"restore-{world.restores}"
    try:
        result = run_restore(world.repo(slug), backup_id, target, master=world.key)
    except IntegrityError as exc:
        return Seen(True, str(exc))
    if result.errors:
        return Seen(True, "\n".join(f"{p}: {m}" for p, m in result.errors))
    root = restored_root(target, world.src)
    assert snapshot(root) == world.taken[backup_id], "restored something else, unnoticed"
    return Seen(False, "")


def verify_sees(world: World, backup_id: str, slug: str | None = None) -> Seen:
    """Verify a backup fully; return whether it failed (and every message it gave,
    warnings included)."""
    try:
        result = run_verify(world.repo(slug), backup_id, master=world.key, full=True)
    except IntegrityError as exc:
        return Seen(True, str(exc))
    text = "\n".join(f"{w}: {m}" for w, m in [*result.problems, *result.warnings])
    return Seen(not result.ok, text)


def flip_byte(path: Path, offset: int) -> None:
    """Given a file and an offset, invert the byte there."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def tree_files(root: Path) -> list[Path]:
    """Return every file below a folder."""
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def randbytes(n: int, seed: int) -> bytes:
    """Return ``n`` reproducible random bytes."""
    return random.Random(seed).randbytes(n)
